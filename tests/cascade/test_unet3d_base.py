"""The base pseudo-3D UNet: exact inflation, temporal attention, joint image-video, training knobs."""

from __future__ import annotations

import pytest
import torch

from cascade.errors import InputShapeError
from cascade.models import BaseUNet3DModel

TOL = 1e-5


@pytest.fixture(scope="module")
def base(sd_folder) -> BaseUNet3DModel:
    return BaseUNet3DModel.from_pretrained_2d(sd_folder).eval()


@pytest.mark.parametrize("per_frame_context", [False, True])
@pytest.mark.parametrize("num_image_frames", [0, 2])
def test_fresh_inflation_reproduces_2d_unet_frame_by_frame(
    base, sd_2d, make_inputs, per_frame_reference, per_frame_context, num_image_frames
):
    sample, timestep, context = make_inputs(frames=4, per_frame_context=per_frame_context)
    with torch.no_grad():
        out = base(sample, timestep, context, num_image_frames=num_image_frames).sample
        ref = per_frame_reference(sd_2d, sample, timestep, context)
    assert out.shape == sample.shape
    torch.testing.assert_close(out, ref, atol=TOL, rtol=0)


def test_scalar_timestep_and_tuple_output(base, make_inputs):
    sample, _, context = make_inputs()
    with torch.no_grad():
        (as_tuple,) = base(sample, 250, context, return_dict=False)
        as_tensor = base(sample, torch.tensor([250, 250]), context).sample
    torch.testing.assert_close(as_tuple, as_tensor, atol=TOL, rtol=0)


def test_temporal_attention_output_projection_starts_at_zero(base):
    projections = [m.attn_temp.to_out for m in base.modules() if hasattr(m, "attn_temp")]
    assert projections, "no temporal attention found"
    for projection in projections:
        assert torch.count_nonzero(projection.weight) == 0 and torch.count_nonzero(projection.bias) == 0


@pytest.fixture
def trained(sd_folder, randomize_temporal) -> BaseUNet3DModel:
    """A base model whose temporal layers are no longer at their zero start."""
    model = BaseUNet3DModel.from_pretrained_2d(sd_folder).eval()
    randomize_temporal(model)
    return model


def _perturb_frame(sample: torch.Tensor, frame: int) -> torch.Tensor:
    changed = sample.clone()
    changed[:, :, frame] += torch.randn_like(changed[:, :, frame])
    return changed


def test_temporal_attention_mixes_frames_once_trained(base, trained, make_inputs):
    sample, timestep, context = make_inputs(frames=4)
    changed = _perturb_frame(sample, frame=2)
    with torch.no_grad():
        fresh_delta = (base(changed, timestep, context).sample - base(sample, timestep, context).sample).abs()
        delta = (trained(changed, timestep, context).sample - trained(sample, timestep, context).sample).abs()
    # Fresh: frames are independent, only frame 2 moves. Trained: every other frame moves too.
    assert fresh_delta[:, :, [0, 1, 3]].max() == 0
    for frame in (0, 1, 3):
        assert delta[:, :, frame].max() > 1e-3


def test_image_frames_are_independent_of_the_video(trained, make_inputs):
    sample, timestep, context = make_inputs(frames=5, per_frame_context=True)
    changed = sample.clone()
    changed[:, :, :3] += torch.randn_like(changed[:, :, :3])  # the 3 video frames only
    with torch.no_grad():
        out = trained(sample, timestep, context, num_image_frames=2).sample
        out_changed = trained(changed, timestep, context, num_image_frames=2).sample
    torch.testing.assert_close(out[:, :, 3:], out_changed[:, :, 3:], atol=0, rtol=0)


def test_image_frames_get_zero_gradient_through_temporal_layers(trained, make_inputs):
    sample, timestep, context = make_inputs(frames=5, per_frame_context=True)
    sample.requires_grad_(True)
    out = trained(sample, timestep, context, num_image_frames=2).sample
    # Image-frame loss: no gradient reaches any temporal parameter.
    image_loss = out[:, :, 3:].square().mean()
    temporal = list(trained.temporal_parameters())
    grads = torch.autograd.grad(image_loss, temporal, retain_graph=True, allow_unused=True)
    assert all(grad is None or torch.count_nonzero(grad) == 0 for grad in grads)
    # Video-frame loss: it reaches the temporal layers but not the image frames.
    video_loss = out[:, :, :3].square().mean()
    (grad_sample, *video_grads) = torch.autograd.grad(video_loss, [sample, *temporal])
    assert torch.count_nonzero(grad_sample[:, :, 3:]) == 0
    assert any(torch.count_nonzero(grad) > 0 for grad in video_grads)


def test_gradient_checkpointing_gives_the_same_gradients(trained, make_inputs):
    sample, timestep, context = make_inputs()
    trained.train()

    def grads() -> list[torch.Tensor]:
        trained.zero_grad()
        trained(sample, timestep, context, num_image_frames=1).sample.square().mean().backward()
        return [p.grad.clone() for p in trained.parameters()]

    plain = grads()
    trained.enable_gradient_checkpointing()
    checkpointed = grads()
    trained.disable_gradient_checkpointing()
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_naive_attention_matches_sdpa(trained, make_inputs):
    sample, timestep, context = make_inputs()
    with torch.no_grad():
        sdpa = trained(sample, timestep, context).sample
        trained.set_attention_implementation("naive")
        naive = trained(sample, timestep, context).sample
        trained.set_attention_implementation("sdpa")
    torch.testing.assert_close(naive, sdpa, atol=TOL, rtol=1e-4)


def test_bf16_forward_is_finite_and_close_to_fp32(trained, make_inputs):
    sample, timestep, context = make_inputs()
    with torch.no_grad():
        reference = trained(sample, timestep, context).sample
        half = trained.to(torch.bfloat16)(sample.bfloat16(), timestep, context.bfloat16()).sample
    assert half.dtype == torch.bfloat16 and torch.isfinite(half).all()
    error = (half.float() - reference).abs().mean() / reference.abs().mean()
    assert error < 0.05


def test_compiles_without_graph_breaks(trained, make_inputs):
    sample, timestep, context = make_inputs(frames=3)
    torch._dynamo.reset()
    compiled = torch.compile(trained, backend="eager", fullgraph=True)  # fullgraph: a break raises
    with torch.no_grad():
        out = compiled(sample, timestep, context, num_image_frames=1).sample
        expected = trained(sample, timestep, context, num_image_frames=1).sample
    torch.testing.assert_close(out, expected, atol=TOL, rtol=0)


def test_save_pretrained_round_trip(trained, make_inputs, tmp_path):
    trained.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "diffusion_pytorch_model.safetensors").is_file()
    loaded, info = BaseUNet3DModel.from_pretrained(tmp_path / "model", output_loading_info=True)
    assert info.missing_keys == [] and info.unexpected_keys == []
    sample, timestep, context = make_inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.eval()(sample, timestep, context).sample, trained(sample, timestep, context).sample, atol=0, rtol=0
        )


@pytest.mark.parametrize(
    ("shape", "context_shape", "kwargs", "match"),
    [
        ((2, 4, 8, 8), (2, 5, 12), {}, r"sample must be 5-d \(B, C, F, H, W\), got 4-d of shape \(2, 4, 8, 8\)"),
        ((2, 3, 3, 8, 8), (2, 5, 12), {}, "takes 4 latent \\+ 0 added_cond channels, got 3"),
        ((2, 4, 3, 8, 8), (2, 4, 5, 12), {}, r"encoder_hidden_states must be \(2, L, D\) or \(2, 3, L, D\)"),
        ((2, 4, 3, 8, 8), (2, 5, 12), {"num_image_frames": 4}, "num_image_frames=4 must lie in"),
    ],
)
def test_bad_inputs_give_one_line_errors(base, shape, context_shape, kwargs, match):
    with pytest.raises(InputShapeError, match=match) as error:
        base(torch.zeros(shape), 10, torch.zeros(context_shape), **kwargs)
    assert "\n" not in str(error.value)
