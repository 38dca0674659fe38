"""Training of the cascade's networks: DeepSpeed ZeRO on Ray Train, fed by manifests with the
curriculum mix (torchtitan's shape: small components, assembled by config).

    training.config        TrainConfig (pydantic, unknown keys rejected), --set overrides, paths,
                           sealing credentials on their way to the workers
    training.specs         one model spec per trainable network (``model.kind``): how it is built,
                           what it trains, what a batch holds, its loss, how it exports
    training.data          manifests, decoding, curriculum mix (the data stream)
    training.conditioning  frozen CLIP text encoder + SD VAE, caption dropout, latent cache
    training.objective     DDPM noise/timesteps, epsilon / v targets, the joint video+image loss
    training.model_files   pre-flight checks of model folders, no weights loaded
    training.engine        trainable subset, DeepSpeed config and engine
    training.ema           EMA of the trained weights, sharded under ZeRO-3
    training.checkpointing per-rank checkpoints for Ray, ZeRO consolidation, model export
    training.metrics       metrics reduced over ranks, TensorBoard + JSON lines, progress line
    training.trainer       the trainer of one rank: step, report, checkpoint, export
    training.callbacks     hooks into the trainer (registered by the caller, run on every worker)
    training.worker        the Ray Train entry point
    training.launcher      pre-flight, TorchTrainer job, resume, export (driver side)
    training.precompute    the latent store filled by a Ray Data job

Nothing is imported here, so that ``import training.data`` stays light.
"""
