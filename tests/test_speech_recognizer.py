"""The real Korean Vosk model behind grammar-restricted utterances."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from interphone.voice.speech import mulaw
from interphone.voice.speech.models import (
    ModelError,
    ModelRegistry,
    bundled_korean_model,
    check_vocabulary,
)
from interphone.voice.speech.recognizer import Utterance, recognize
from interphone.voice.speech.results import Status
from interphone.voice.speech.vocabulary import load_vocabulary

from .fixtures.speech import support
from .fixtures.speech.support import SPOKEN, TEST_LIMITS, fixture, hiss


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return support.ko_registry()


@pytest.fixture(autouse=True)
def no_leak(registry: ModelRegistry) -> object:
    yield
    assert registry.live_recognizers == 0, "a recognizer was not freed"


def test_the_korean_model_is_found_in_the_installed_package() -> None:
    path = bundled_korean_model()
    assert path is not None and (path / "am" / "final.mdl").is_file()


def test_the_korean_models_unknown_word_token_is_upper_case_unk(registry: ModelRegistry) -> None:
    loaded = registry.get("ko")
    assert loaded.unk == "<UNK>"
    assert not loaded.has_word("[unk]")
    assert loaded.dynamic_graph  # small model: grammars restrict the search


def test_grammar_json_keeps_korean_words_unescaped_or_vosk_drops_them(
    registry: ModelRegistry,
) -> None:
    loaded = registry.get("ko")
    text = loaded.grammar_json(loaded.grammar("yes_no"))
    assert "네" in text and "\\u" not in text
    assert json.loads(text) == ["네", "예", "아니요", "아니오", "<UNK>"]


def test_every_korean_grammar_word_exists_in_the_model(registry: ModelRegistry) -> None:
    assert registry.get("ko").missing == {}


@pytest.mark.parametrize("name", sorted(SPOKEN))
def test_committed_fixture_is_recognized_through_its_grammar(
    registry: ModelRegistry, name: str
) -> None:
    grammar, meaning = SPOKEN[name]
    result = recognize(registry, "ko", grammar, fixture(name) + hiss(3), limits=TEST_LIMITS)
    assert (result.status, result.meaning) == ("match", meaning)
    assert 0 < result.audio_ms < 3000  # decided by Vosk's endpointing, not by the limit


def test_speech_outside_the_grammar_is_no_match_not_a_forced_word(
    registry: ModelRegistry,
) -> None:
    # "안녕하세요" (hello) is forced onto several yes/no words: never accepted.
    result = recognize(registry, "ko", "yes_no", fixture("ko_hello") + hiss(3))
    assert result.status == "no_match"
    assert result.meaning == ""
    assert len(result.word.split()) > 1


def test_a_quiet_line_ends_as_silence_at_the_no_speech_limit(registry: ModelRegistry) -> None:
    result = recognize(registry, "ko", "yes_no", hiss(8), limits=TEST_LIMITS)
    assert result.status == "silence"
    assert result.audio_ms == pytest.approx(TEST_LIMITS.no_speech_s * 1000, abs=40)


def test_digital_silence_ends_as_silence_too(registry: ModelRegistry) -> None:
    result = recognize(registry, "ko", "menu", b"\xff" * 8000 * 8, limits=TEST_LIMITS)
    assert result.status == "silence"


def test_speech_that_never_pauses_ends_as_too_long_at_the_maximum(
    registry: ModelRegistry,
) -> None:
    speech = mulaw.decode(fixture("ko_hello"))[1200:-1200]  # without its quiet margins
    endless = mulaw.encode(np.tile(speech, 6))
    result = recognize(registry, "ko", "yes_no", endless, limits=TEST_LIMITS)
    assert result.status == "too_long"
    assert result.audio_ms == pytest.approx(TEST_LIMITS.max_s * 1000, abs=40)


def test_a_stream_that_ends_mid_word_is_classified_from_what_was_heard(
    registry: ModelRegistry,
) -> None:
    result = recognize(registry, "ko", "yes_no", fixture("ko_yes"))  # no trailing silence
    assert result.status in {"match", "no_match"}  # never an error, never silence


def test_the_recognizer_is_freed_when_the_utterance_closes(registry: ModelRegistry) -> None:
    loaded = registry.get("ko")
    before = registry.created_recognizers
    with Utterance(registry, loaded, loaded.grammar("yes_no")) as utterance:
        assert registry.live_recognizers == 1
        utterance.feed_mulaw(hiss(0.5))
    assert registry.live_recognizers == 0
    assert registry.created_recognizers == before + 1
    assert utterance.feed_mulaw(hiss(0.1)) is not None  # closed: answers, never crashes
    assert utterance.finish().status == Status.ERROR


def test_the_recognizer_is_freed_once_the_utterance_decides(registry: ModelRegistry) -> None:
    loaded = registry.get("ko")
    utterance = Utterance(registry, loaded, loaded.grammar("yes_no"), limits=TEST_LIMITS)
    result = None
    audio = fixture("ko_yes") + hiss(3)
    for offset in range(0, len(audio), 160):
        result = utterance.feed_mulaw(audio[offset : offset + 160])
        if result is not None:
            break
    assert result is not None and result.meaning == "yes"
    assert registry.live_recognizers == 0  # freed at the decision, before close()


def test_feeding_8khz_directly_works_as_well_as_upsampling_to_16khz(
    registry: ModelRegistry,
) -> None:
    # The Korean model computes features at 16 kHz; Kaldi resamples 8 kHz input itself
    # (allow-upsample), so Twilio's audio goes in as it comes.
    loaded = registry.get("ko")
    grammar = loaded.grammar("yes_no")
    pcm = mulaw.decode(fixture("ko_no") + hiss(3))
    with Utterance(registry, loaded, grammar, rate=16000, limits=TEST_LIMITS) as utterance:
        result = None
        doubled = mulaw.upsample_2x(pcm)
        for offset in range(0, doubled.size, 320):
            result = utterance.feed(doubled[offset : offset + 320])
            if result is not None:
                break
    assert result is not None and result.meaning == "no"


def test_a_grammar_word_missing_from_the_model_is_reported_by_name(
    registry: ModelRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vocabulary = (support.VOCABULARY_DIR / "ko.toml").read_text(encoding="utf-8")
    (tmp_path / "ko.toml").write_text(
        vocabulary.replace('"예" = "yes"', '"예" = "yes"\n"xyzzy" = "yes"'), encoding="utf-8"
    )
    with_typo = load_vocabulary("ko", tmp_path)
    loaded = dataclasses.replace(registry.get("ko"), grammars={}, missing={})  # same model
    with caplog.at_level(logging.WARNING):
        check_vocabulary(loaded, with_typo)
    assert loaded.missing == {"yes_no": ("xyzzy",)}
    assert "lacks the [speech.yes_no] words xyzzy" in caplog.text
    assert "xyzzy" not in loaded.grammar("yes_no").words  # Vosk would drop it silently
    with pytest.raises(ModelError, match="xyzzy"):
        check_vocabulary(loaded, with_typo, strict=True)


def test_a_meaning_left_without_any_word_the_model_knows_stops_the_load(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    vocabulary = (support.VOCABULARY_DIR / "ko.toml").read_text(encoding="utf-8")
    (tmp_path / "ko.toml").write_text(
        vocabulary.replace('"아니요" = "no"\n"아니오" = "no"', '"xyzzy" = "no"'), encoding="utf-8"
    )
    loaded = dataclasses.replace(registry.get("ko"), grammars={}, missing={})
    with pytest.raises(ModelError, match="no word of \\[speech.yes_no\\] left for no"):
        check_vocabulary(loaded, load_vocabulary("ko", tmp_path))


def test_a_language_without_a_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.languages() == []
    with pytest.raises(ModelError, match="no Vosk model in"):
        registry.get("fr")
    with pytest.raises(ModelError, match="VOSK_MODELS_DIR is not set"):
        ModelRegistry(None).get("fr")


def test_the_model_is_loaded_once_and_shared(registry: ModelRegistry) -> None:
    assert registry.get("ko") is registry.get("ko")
    assert registry.languages() == ["ko"]


def test_threads_asking_for_a_model_at_once_load_it_only_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(tmp_path)
    loads: list[str] = []
    shared = object()

    together = threading.Barrier(8)  # the eight ask at the same moment
    held = threading.Event()  # never set: the load takes 0.2 s, the others ask meanwhile

    def slow_load(lang: str) -> object:
        loads.append(lang)
        held.wait(0.2)
        return shared

    def ask() -> None:
        together.wait()
        got.append(registry.get("fr"))

    monkeypatch.setattr(registry, "_load", slow_load)
    got: list[object] = []
    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["fr"]
    assert got == [shared] * 8


def test_a_language_code_cannot_point_outside_the_models_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a language code"):
        ModelRegistry(tmp_path).get("../ko")
