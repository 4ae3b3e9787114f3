"""Speech Commands on WAV files the tests write with the standard library's `wave` module."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch

from datasets import SpeechCommandsDataModule
from datasets.speech_commands import WORDS, dct_matrix, mel_filterbank, mfcc, read_wav
from engine.cli import compose

COMMON = {"batch_size": 4, "num_workers": 0, "num_classes": 10, "val_fraction": 0.2}


def write_wav(path, samples, rate=16000, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(channels)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def write_speech_commands(root, per_word=4, length=16000):
    rng = np.random.default_rng(0)
    for label, word in enumerate(WORDS):
        for index in range(per_word):
            tone = 8000 * np.sin(2 * np.pi * (200 + 100 * label) * np.arange(length) / 16000)
            write_wav(root / "SpeechCommands" / word / f"{index:04d}.wav", tone + rng.normal(0, 100, length))
    write_wav(root / "SpeechCommands" / "yes" / "short.wav", np.zeros(8000))  # dropped, as in the reference
    return root


def test_read_wav_scales_16_bit_samples(tmp_path):
    write_wav(tmp_path / "a.wav", [0, 16384, -32768, 32767])
    np.testing.assert_allclose(read_wav(tmp_path / "a.wav"), [0.0, 0.5, -1.0, 32767 / 32768])


@pytest.mark.parametrize("mfcc_features, shape", [(False, (1, 16000)), (True, (20, 161))])
def test_splits_shapes_and_standardisation(tmp_path, mfcc_features, shape):
    datamodule = SpeechCommandsDataModule(root=str(write_speech_commands(tmp_path)), in_channels=shape[0], input_size=[shape[1]], mfcc=mfcc_features, **COMMON)
    datamodule.setup("fit")
    sizes = [len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)]
    assert sum(sizes) == 40 and sizes[2] == 6  # the one-second clips only; 15% test
    inputs, labels = next(iter(datamodule.train_dataloader()))
    assert inputs.shape == (4, *shape) and labels.max() < 10
    everything = datamodule._all.tensors[0][datamodule._train_indices]
    torch.testing.assert_close(everything.mean(dim=(0, 2)), torch.zeros(shape[0]), atol=1e-4, rtol=0)


def test_mfcc_pieces():
    dct = dct_matrix(20, 64)
    torch.testing.assert_close(dct.T @ dct, torch.eye(20), atol=1e-5, rtol=0)  # orthonormal columns
    bank = mel_filterbank(101, 64, 16000)
    # triangles of height <= 1; with 101 frequency bins a few of the 64 narrow low bands catch no bin (as in torchaudio)
    assert bank.shape == (101, 64) and bank.min() >= 0 and bank.max() <= 1 and (bank.max(dim=0).values > 0).sum() >= 48
    # a louder signal shifts the log-mel energies by log(16) (except in the bands that catch no
    # frequency bin, stuck at log(1e-6)), so mostly the 0th (mean log-energy) coefficient moves
    audio = torch.randn(1, 16000)
    difference = mfcc(4 * audio) - mfcc(audio)
    assert difference.shape == (1, 20, 161)
    assert difference[0, 0].mean() > 5 * difference[0, 1:].abs().mean()


def test_missing_and_corrupt_files_are_named(tmp_path):
    datamodule = SpeechCommandsDataModule(root=str(tmp_path), in_channels=1, input_size=[16000], **COMMON)
    with pytest.raises(FileNotFoundError, match=r"SpeechCommands/ lacks the folders yes, no.*speech_commands_v0.02.tar.gz"):
        datamodule.setup("fit")
    root = write_speech_commands(tmp_path, per_word=1)
    (root / "SpeechCommands" / "go" / "bad.wav").write_bytes(b"RIFFjunk")
    with pytest.raises(ValueError, match=r"corrupt WAV file .*go/bad.wav"):
        SpeechCommandsDataModule(root=str(root), in_channels=1, input_size=[16000], **COMMON).setup("fit")
    write_wav(tmp_path / "x" / "stereo.wav", np.zeros(32000), channels=2)
    with pytest.raises(ValueError, match=r"stereo.wav: 2 channel\(s\).*expected mono 16-bit 16000 Hz"):
        read_wav(tmp_path / "x" / "stereo.wav")


@pytest.mark.parametrize("dataset, shape", [("speech_commands", (1, 16000)), ("speech_commands_mfcc", (20, 161))])
def test_configs_compose(dataset, shape):
    cfg = compose([f"dataset={dataset}", "paths.data=unused"])
    assert (cfg.dataset.in_channels, *cfg.dataset.input_size) == shape
