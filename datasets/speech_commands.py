"""Speech Commands (Warden, arXiv 1804.03209) as in CKConv (Romero et al., arXiv 2102.02611):
the ten words yes, no, up, down, left, right, on, off, stop, go; one-second 16 kHz clips.

Reads `<root>/SpeechCommands/<word>/*.wav` (the v0.02 archive
http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz unpacked into
`<root>/SpeechCommands/`) with the standard library's `wave` module, so torchaudio is not
needed. As in the reference, clips shorter than one second are dropped, a fixed 15% of
the clips is the test set, and every channel is standardised with training-set statistics.

- `mfcc=false`: raw audio, `(1, 16000)`.
- `mfcc=true`: 20 MFCCs of 161 frames, `(20, 161)`: 200-sample Hann windows with hop 100,
  64 HTK mel bands up to 8 kHz, log(mel + 1e-6), orthonormal DCT-II (torchaudio's `MFCC`
  with `n_mfcc=20, log_mels=True, n_fft=200, n_mels=64`).
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from datasets.base import DataModule, split_indices

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SAMPLE_RATE = 16000
TEST_FRACTION = 0.15
TEST_SPLIT_SEED = 0
ARCHIVE = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"


def read_wav(path: Path) -> np.ndarray:
    """A mono 16-bit 16 kHz WAV file -> float32 samples in [-1, 1)."""
    try:
        with wave.open(str(path), "rb") as file:
            channels, width, rate, frames = file.getnchannels(), file.getsampwidth(), file.getframerate(), file.getnframes()
            data = file.readframes(frames)
    except (wave.Error, EOFError) as error:
        raise ValueError(f"corrupt WAV file {path}: {error}") from error
    if (channels, width, rate) != (1, 2, SAMPLE_RATE):
        raise ValueError(f"corrupt WAV file {path}: {channels} channel(s), {8 * width}-bit, {rate} Hz; expected mono 16-bit {SAMPLE_RATE} Hz")
    if len(data) != 2 * frames:
        raise ValueError(f"corrupt WAV file {path}: {len(data)} bytes of audio, its header announces {frames} frames (truncated)")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 2**15


def mel_filterbank(num_freqs: int, num_mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular HTK-mel filters `(num_freqs, num_mels)` from 0 Hz to Nyquist, unnormalised."""
    to_mel = lambda hz: 2595.0 * math.log10(1.0 + hz / 700.0)  # noqa: E731
    mels = torch.linspace(to_mel(0.0), to_mel(sample_rate / 2), num_mels + 2)
    edges = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    freqs = torch.linspace(0, sample_rate / 2, num_freqs)
    slopes = edges[None, :] - freqs[:, None]  # (num_freqs, num_mels + 2)
    rising = -slopes[:, :-2] / (edges[1:-1] - edges[:-2])
    falling = slopes[:, 2:] / (edges[2:] - edges[1:-1])
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def dct_matrix(num_coefficients: int, num_inputs: int) -> torch.Tensor:
    """Orthonormal DCT-II `(num_inputs, num_coefficients)`."""
    n = torch.arange(num_inputs, dtype=torch.float64)
    k = torch.arange(num_coefficients, dtype=torch.float64)
    basis = torch.cos(math.pi / num_inputs * (n[:, None] + 0.5) * k[None, :]) * math.sqrt(2.0 / num_inputs)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.float()


def mfcc(audio: torch.Tensor, num_coefficients: int = 20, n_fft: int = 200, num_mels: int = 64) -> torch.Tensor:
    """`(N, T)` audio -> `(N, num_coefficients, T // (n_fft // 2) + 1)` MFCCs."""
    window = torch.hann_window(n_fft)
    spectrum = torch.stft(audio, n_fft, hop_length=n_fft // 2, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spectrum.abs() ** 2  # (N, n_fft // 2 + 1, frames)
    mel = torch.einsum("nft,fm->nmt", power, mel_filterbank(n_fft // 2 + 1, num_mels, SAMPLE_RATE))
    return torch.einsum("nmt,mk->nkt", torch.log(mel + 1e-6), dct_matrix(num_coefficients, num_mels))


class SpeechCommandsDataModule(DataModule):
    """`(B, 1, 16000)` audio or `(B, 20, 161)` MFCCs; integer labels 0-9 in the order of `WORDS`.

    Args:
        mfcc: MFCC features instead of raw audio.
    """

    name = "speech_commands"

    def __init__(self, *, mfcc: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        expected = (20, 161) if mfcc else (1, SAMPLE_RATE)
        if (self.in_channels, *self.input_size) != expected:
            raise ValueError(
                f"dataset.in_channels={self.in_channels}, dataset.input_size={list(self.input_size)} must be "
                f"{expected[0]} and [{expected[1]}] for Speech Commands with mfcc={mfcc}"
            )
        self.mfcc = mfcc
        self._all: TensorDataset | None = None
        self._train_indices: list[int] = []
        self._test_indices: list[int] = []

    @property
    def folder(self) -> Path:
        return Path(self.root) / "SpeechCommands"

    def _load(self) -> TensorDataset:
        if self._all is not None:
            return self._all
        missing = [word for word in WORDS if not (self.folder / word).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"Speech Commands not found: {self.folder}/ lacks the folders {', '.join(missing)}; "
                f"download {ARCHIVE} and unpack it into {self.folder}/ (it holds one folder of .wav files per word)"
            )
        clips, labels = [], []
        for label, word in enumerate(WORDS):
            for path in sorted((self.folder / word).glob("*.wav")):
                audio = read_wav(path)
                if len(audio) == SAMPLE_RATE:  # the reference drops the shorter clips
                    clips.append(audio)
                    labels.append(label)
        if not clips:
            raise FileNotFoundError(f"Speech Commands: no one-second .wav clips in the word folders of {self.folder}/")
        inputs = torch.from_numpy(np.stack(clips))
        inputs = mfcc(inputs) if self.mfcc else inputs[:, None]
        targets = torch.tensor(labels)
        self._train_indices, self._test_indices = split_indices(len(targets), TEST_FRACTION, TEST_SPLIT_SEED)
        train = inputs[self._train_indices]
        mean, std = train.mean(dim=(0, 2), keepdim=True), train.std(dim=(0, 2), keepdim=True)
        self._all = TensorDataset((inputs - mean) / std.clamp_min(1e-8), targets)
        return self._all

    def load_train(self) -> Dataset:
        return Subset(self._load(), self._train_indices)

    def load_test(self) -> Dataset:
        return Subset(self._load(), self._test_indices)
