"""Headless rendering: backend choice, frame stride, decoded frame counts, returns unchanged."""

from __future__ import annotations

import os

import imageio
import imageio.v3 as iio
import numpy as np
import pytest

from rl_minrnn.envs.evaluation.render import (
    RenderError,
    VideoRecorder,
    expected_frame_count,
    frame_stride,
    log_video_tensorboard,
    open_video_writer,
    overlay_text,
    setup_headless_gl,
)
from rl_minrnn.envs.evaluation.rollout import evaluate_agent

from test_rollout import ENV_ID, FixedPolicyAgent  # the shared test double (pytest puts tests/ on the path)

SIZE = 64


@pytest.fixture(scope="module")
def gl_backend():
    try:
        return setup_headless_gl()
    except RenderError as error:
        pytest.skip(str(error))


def test_frame_stride_and_expected_counts():
    assert frame_stride(125, 30) == 4  # Hopper: 125 steps/s, every 4th step for a 30 fps video
    assert frame_stride(20, 30) == 1
    assert expected_frame_count(11, 4) == 4  # steps 0, 4, 8 and the last, 11
    assert expected_frame_count(8, 4) == 3  # steps 0, 4, 8
    with pytest.raises(ValueError):
        frame_stride(125, 0)


def test_overlay_draws_text_and_keeps_shape():
    frame = np.full((SIZE, SIZE, 3), 128, np.uint8)
    out = overlay_text(frame, ["step 3", "return 1.0"])
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert not np.array_equal(out, frame)
    assert np.array_equal(frame, np.full((SIZE, SIZE, 3), 128, np.uint8))  # input untouched


def test_bad_video_suffix_is_a_clear_error(tmp_path):
    with pytest.raises(RenderError, match=r"\.mp4 or \.gif"):
        VideoRecorder(tmp_path / "video.avi")


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_decodes_to_expected_frames_and_returns_are_unchanged(tmp_path, gl_backend, suffix):
    agent = FixedPolicyAgent()
    kwargs = dict(seed=1, max_episode_steps=9, progress=False)
    plain = evaluate_agent(agent, ENV_ID, 3, 3600.0, **kwargs)
    recorder = VideoRecorder(tmp_path / f"video{suffix}", episodes=(0, 2), width=SIZE, height=SIZE, fps=30)
    rendered = evaluate_agent(agent, ENV_ID, 3, 3600.0, render=recorder, **kwargs)
    np.testing.assert_array_equal(plain.targets[0].returns, rendered.targets[0].returns)
    np.testing.assert_array_equal(plain.targets[0].lengths, rendered.targets[0].lengths)

    lengths = rendered.targets[0].lengths
    expected = {e: expected_frame_count(int(lengths[e]), 4) for e in (0, 2)}
    assert recorder.stride == 4
    assert recorder.frame_counts() == expected
    assert rendered.targets[0].frames_rendered == sum(expected.values())
    if suffix == ".mp4":
        reader = imageio.get_reader(tmp_path / "video.mp4")
        assert reader.count_frames() == sum(expected.values())
        assert reader.get_meta_data()["size"] == (SIZE, SIZE)
        reader.close()
    else:
        frames = iio.imread(tmp_path / "video.gif", index=None)
        assert frames.shape[0] == sum(expected.values())  # the overlay makes every frame distinct
        assert frames.shape[1:3] == (SIZE, SIZE)
    assert rendered.video == str(tmp_path / f"video{suffix}")


def test_user_set_backend_is_respected(monkeypatch):
    import rl_minrnn.envs.evaluation.render as render

    monkeypatch.setattr(render, "_chosen_backend", None)
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    assert render.setup_headless_gl() == "osmesa"
    assert os.environ["PYOPENGL_PLATFORM"] == "osmesa"
    monkeypatch.setattr(render, "_chosen_backend", None)


def test_no_backend_is_a_clear_error(monkeypatch):
    import rl_minrnn.envs.evaluation.render as render

    monkeypatch.setattr(render, "_chosen_backend", None)
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    monkeypatch.setattr(render, "probe_gl_backend", lambda backend: (False, f"no {backend} here"))
    with pytest.raises(RenderError, match="egl: no egl here; osmesa: no osmesa here.*libosmesa6"):
        render.setup_headless_gl()
    monkeypatch.setattr(render, "_chosen_backend", None)


def test_video_to_tensorboard_summary(tmp_path):
    import io

    from PIL import Image

    path = tmp_path / "v.gif"
    writer = open_video_writer(path, fps=25)
    for i in range(5):
        writer.append_data(np.full((16, 24, 3), 40 * i, np.uint8))
    writer.close()

    class FakeSummaryWriter:  # the part of torch's SummaryWriter the helper uses
        def _get_file_writer(self):
            return self

        def add_summary(self, summary, step):
            self.summary, self.step = summary, step

    fake = FakeSummaryWriter()
    assert log_video_tensorboard(fake, "eval/video", path, step=7)
    (value,) = fake.summary.value
    assert value.tag == "eval/video" and fake.step == 7
    assert (value.image.width, value.image.height) == (24, 16)
    assert Image.open(io.BytesIO(value.image.encoded_image_string)).n_frames == 5
    assert not log_video_tensorboard(fake, "eval/video", tmp_path / "missing.gif", step=7)
