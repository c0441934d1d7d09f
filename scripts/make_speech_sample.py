"""Make tests/data/speech_16k.wav: synthetic speech for the codec bench (bench/codec.py).

One-off: the WAV is committed, so neither the bench nor the tests need espeak-ng. Rerun
(``apt-get install espeak-ng``, then ``.venv/bin/python scripts/make_speech_sample.py``
with the ``bench`` extra installed) only to change the sample. espeak-ng writes 22,050 Hz
16-bit mono; each sentence is resampled to 16 kHz (scipy's polyphase ``resample_poly``,
320/441), the sentences are joined with 300 ms of silence, and the result is written as
16 kHz mono PCM16 WAV.
"""

from __future__ import annotations

import io
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "speech_16k.wav"
RATE = 16000
GAP_SECONDS = 0.3
#: (voice, words per minute, pitch 0-99, sentence): two voices, alternating speakers.
SENTENCES = [
    ("en-us", 175, 45, "Hi, thanks for calling back. Do you have a minute to go over the plan?"),
    ("en-gb+f3", 170, 60, "Sure. I looked at the numbers this morning, and they seem fine to me."),
    (
        "en-us",
        180,
        40,
        "Great. The first shipment leaves on Tuesday, and the second one on Friday.",
    ),
    ("en-gb+f3", 170, 65, "Wait, which warehouse is the second one going to? The old one closed."),
    (
        "en-us",
        175,
        50,
        "Right, it goes to the new site near the station, about twelve miles north.",
    ),
    ("en-gb+f3", 175, 55, "Okay. Can you send me the address and the phone number of the manager?"),
]


def speak(voice: str, wpm: int, pitch: int, text: str) -> np.ndarray:
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, 22050):
            sys.exit(f"unexpected espeak-ng output format for {voice!r}")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    return np.asarray(resample_poly(pcm, 320, 441))


def main() -> None:
    gap = np.zeros(round(GAP_SECONDS * RATE))
    parts: list[np.ndarray] = []
    for voice, wpm, pitch, text in SENTENCES:
        parts += [speak(voice, wpm, pitch, text), gap]
    audio = np.clip(np.round(np.concatenate(parts)), -32768, 32767).astype("<i2")
    with wave.open(str(OUT), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(audio.tobytes())
    print(f"{OUT}: {len(audio) / RATE:.1f} s at {RATE} Hz")


if __name__ == "__main__":
    main()
