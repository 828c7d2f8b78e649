"""Headless video of rollouts: OpenGL backend choice, frame stride, text overlay, mp4/gif writing.

Rendering happens in the rollout's own environments, right after a step, and only for the frames the
video shows: ``mujoco`` rendering reads the simulation state and never writes it, so the returns are
the same with and without a video (``tests/test_render.py`` checks this).

Software rendering is slow on CPUs (frame costs: ``docs/evaluation.md``), so only the frames the video
shows are drawn: a 30 fps real-time video of Hopper (125 steps/s) needs every 4th step (``frame_stride``).

Backend: MuJoCo's ``MUJOCO_GL`` (and PyOpenGL's ``PYOPENGL_PLATFORM``) are read when the first
rendering context is made and when ``OpenGL`` is first imported, respectively, so once one backend
has been tried in a process another cannot be. ``setup_headless_gl`` therefore probes ``egl`` then
``osmesa`` in a short-lived subprocess and sets the environment variables of this process before any
context is made. A ``MUJOCO_GL`` set by the user is respected as is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".gif")
HEADLESS_BACKENDS = ("egl", "osmesa")

_PROBE = """
import os, sys
backend = sys.argv[1]
os.environ["MUJOCO_GL"] = backend
os.environ.setdefault("PYOPENGL_PLATFORM", backend)
if backend == "egl":
    from mujoco.egl import GLContext
else:
    from mujoco.osmesa import GLContext
import mujoco
ctx = GLContext(16, 16)
ctx.make_current()
model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='.1'/></worldbody></mujoco>")
mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
ctx.free()
"""


class RenderError(RuntimeError):
    """Rendering is impossible here (no headless OpenGL, bad video path); the message says what to do."""


_chosen_backend: str | None = None


def probe_gl_backend(backend: str, timeout: float = 60.0) -> tuple[bool, str]:
    """Try to make a MuJoCo rendering context with ``backend`` in a subprocess: (works, error text)."""
    env = dict(os.environ)
    env.pop("PYOPENGL_PLATFORM", None)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, backend],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    if proc.returncode == 0:
        return True, ""
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return False, lines[-1] if lines else f"exit code {proc.returncode}"


def setup_headless_gl() -> str:
    """Choose the headless OpenGL backend for MuJoCo and set it in ``os.environ``; returns its name.

    A user-set ``MUJOCO_GL`` wins. Otherwise ``egl`` is tried, then ``osmesa``; when neither works a
    ``RenderError`` says what was tried and how to fix it. Call before the first rendering context is
    made (``evaluate.py`` does so before building environments).
    """
    global _chosen_backend
    if _chosen_backend is not None:
        return _chosen_backend
    user = os.environ.get("MUJOCO_GL")
    if user:
        backend = user.strip().lower()
        if backend in HEADLESS_BACKENDS:
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
        _chosen_backend = backend
        return backend
    imported = sys.modules.get("OpenGL") is not None
    platform = os.environ.get("PYOPENGL_PLATFORM")
    failures = []
    for backend in HEADLESS_BACKENDS:
        if imported and platform and platform.lower() != backend:
            failures.append(f"{backend}: PyOpenGL was already imported with PYOPENGL_PLATFORM={platform}")
            continue
        ok, error = probe_gl_backend(backend)
        if ok:
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            _chosen_backend = backend
            return backend
        failures.append(f"{backend}: {error}")
    raise RenderError(
        "No headless OpenGL backend works for MuJoCo rendering ("
        + "; ".join(failures)
        + "). Install EGL (e.g. apt-get install libegl1) or OSMesa (apt-get install libosmesa6), "
        "or set MUJOCO_GL yourself; evaluation without --render does not need either."
    )


def env_fps(env) -> float:
    """Simulation steps per second of a (MuJoCo) env: ``metadata['render_fps']``, else ``1 / dt``."""
    fps = (getattr(env, "metadata", None) or {}).get("render_fps")
    if fps:
        return float(fps)
    dt = getattr(getattr(env, "unwrapped", env), "dt", None)
    if dt:
        return 1.0 / float(dt)
    raise RenderError(f"Cannot tell the frame rate of {env}: no metadata['render_fps'] and no dt")


def frame_stride(sim_fps: float, video_fps: float) -> int:
    """Env steps per video frame for a real-time video: round(sim_fps / video_fps), at least 1."""
    if video_fps <= 0:
        raise ValueError(f"video fps must be positive, got {video_fps}")
    return max(1, int(round(sim_fps / video_fps)))


def expected_frame_count(episode_length: int, stride: int) -> int:
    """Frames a ``VideoRecorder`` keeps of one episode: steps 0, s, 2s, ... and the final step."""
    return episode_length // stride + 1 + (1 if episode_length % stride else 0)


def _even(size: int) -> int:
    return max(2, size - size % 2)


# ----------------------------------------------------------------------------------------- overlay

_fonts: dict[int, object] = {}


def _font(size: int):
    if size not in _fonts:
        from PIL import ImageFont

        try:
            _fonts[size] = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1 has one fixed bitmap font
            _fonts[size] = ImageFont.load_default()
    return _fonts[size]


def overlay_text(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """Draw ``lines`` in the top-left corner on a dark box; returns a new uint8 frame."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(image)
    font = _font(max(9, image.height // 22))
    text = "\n".join(lines)
    left, top, right, bottom = draw.multiline_textbbox((4, 3), text, font=font, spacing=2)
    draw.rectangle((0, 0, right + 4, bottom + 4), fill=(0, 0, 0))
    draw.multiline_text((4, 3), text, font=font, fill=(255, 255, 255), spacing=2)
    return np.asarray(image)


# ----------------------------------------------------------------------------------------- writer


def open_video_writer(path: str | Path, fps: float):
    """An imageio writer for ``.mp4`` (ffmpeg, libx264) or ``.gif`` (Pillow), by the path's suffix."""
    import imageio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise RenderError(f"Video path {str(path)!r} must end in .mp4 or .gif")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".mp4":
        # macro_block_size=2: keep the requested size (libx264/yuv420p only needs even sizes).
        return imageio.get_writer(
            path, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=7, macro_block_size=2
        )
    # Note: Pillow merges identical consecutive GIF frames into one longer frame.
    return imageio.get_writer(path, mode="I", duration=1000.0 / fps, loop=0)


@dataclass
class VideoRecorder:
    """Records episodes of a rollout into one video, episode after episode.

    The rollout (``envs.evaluation.rollout.evaluate_agent``) builds the recorded episodes' envs with
    ``env_kwargs()``, and after the reset and after every env step asks ``wants_frame``; only then does
    it call ``env.render()`` and hand the frame to ``add_frame``. Frames are kept at steps 0, s, 2s, ...
    and the episode's last step (s = ``stride``, set from the env's frame rate by ``configure``).
    Episodes run at the same time: the first recorded one streams to the file, later ones are held in
    memory until ``close``.
    """

    path: str | Path
    episodes: tuple[int, ...] = (0,)
    width: int = 320
    height: int = 320
    fps: float = 30.0
    overlay: bool = True
    target_index: int = 0  # which target return's episodes to record
    stride: int | None = None  # env steps per frame; None: real time from the env's frame rate
    frames_written: int = 0
    _writer: object = field(default=None, repr=False)
    _pending: dict = field(default_factory=dict, repr=False)
    _counts: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.path = Path(self.path)
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise RenderError(f"Video path {str(self.path)!r} must end in .mp4 or .gif")
        self.episodes = tuple(int(e) for e in self.episodes)
        self.width, self.height = _even(int(self.width)), _even(int(self.height))

    def env_kwargs(self) -> dict:
        return {"render_mode": "rgb_array", "width": self.width, "height": self.height}

    def configure(self, env) -> None:
        """Set the frame stride from the env's frame rate (unless given) and open the file."""
        if self.stride is None:
            self.stride = frame_stride(env_fps(env), self.fps)
        if self._writer is None:
            self._writer = open_video_writer(self.path, self.fps)

    def records(self, target_index: int, episode: int) -> bool:
        return target_index == self.target_index and episode in self.episodes

    def wants_frame(self, step: int, done: bool) -> bool:
        return step % (self.stride or 1) == 0 or done

    def add_frame(self, episode: int, frame: np.ndarray, step: int, return_so_far: float, return_to_go: float):
        if self.overlay:
            frame = overlay_text(
                frame,
                [f"episode {episode}  step {step}", f"return {return_so_far:.1f}", f"to go {return_to_go:.1f}"],
            )
        self._counts[episode] = self._counts.get(episode, 0) + 1
        if episode == self.episodes[0]:
            self._writer.append_data(frame)
            self.frames_written += 1
        else:
            self._pending.setdefault(episode, []).append(frame)

    def close(self) -> Path:
        """Write the held episodes and close the file; returns its path."""
        if self._writer is None:
            return self.path
        for episode in self.episodes[1:]:
            for frame in self._pending.pop(episode, []):
                self._writer.append_data(frame)
                self.frames_written += 1
        self._writer.close()
        self._writer = None
        return self.path

    def frame_counts(self) -> dict[int, int]:
        """Frames recorded per episode."""
        return dict(self._counts)


# ----------------------------------------------------------------------------------------- tensorboard


def log_video_tensorboard(writer, tag: str, path: str | Path, step: int, max_frames: int = 300) -> bool:
    """Log a recorded video to TensorBoard as an animated GIF image summary (no moviepy needed).

    ``writer`` is a ``torch.utils.tensorboard.SummaryWriter``. Returns False (and logs nothing) when the
    file cannot be read. Frames beyond ``max_frames`` are dropped to keep event files small.
    """
    import io

    import imageio.v3 as iio
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    try:
        frames = iio.imread(path, index=None)
    except Exception:  # noqa: BLE001 - an unreadable video is skipped, never fatal to training
        return False
    frames = frames[:max_frames]
    if frames.ndim != 4 or len(frames) == 0:
        return False
    fps = 30.0
    try:
        meta = iio.immeta(path)
        fps = float(meta["fps"]) if meta.get("fps") else 1000.0 / float(meta.get("duration") or 1000.0 / fps)
    except Exception:  # noqa: BLE001 - keep the default frame rate
        pass
    images = [Image.fromarray(f[..., :3]) for f in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0
    )
    height, width = frames.shape[1:3]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=buffer.getvalue())
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    return True

