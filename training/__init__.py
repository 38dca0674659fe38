"""Training of the LaVie base model: joint image-video DeepSpeed ZeRO on Ray Train.

Small components, assembled by config (``training/configs/*.yaml`` → :class:`training.config.TrainConfig`):

    training.data          manifests, decoding, curriculum mix (the data stream)
    training.config        TrainConfig (pydantic, unknown keys rejected), --set overrides, paths
    training.conditioning  frozen CLIP text encoder + SD VAE, caption dropout, latent cache
    training.objective     DDPM noise/timesteps, epsilon / v targets, the joint video+image loss
    training.engine        pre-flight model checks, UNet build/inflation, trainable subset,
                           DeepSpeed config and engine
    training.ema           EMA of the trained weights, sharded under ZeRO-3
    training.checkpointing per-rank checkpoints for Ray, ZeRO consolidation, model export
    training.metrics       metrics reduced over ranks, TensorBoard + JSON lines, progress line
    training.loop          the per-worker Ray Train loop
    training.launcher      pre-flight, TorchTrainer job, resume, export (driver side)
    training.cli           `lavie train`
    training.tiny_sd       a tiny random SD folder (tests, benchmarks, demo)
    training.demo_inputs   the tiny SD folder and an image manifest beside curated clips

Nothing is imported here, so that ``import training.data`` stays light.
"""
