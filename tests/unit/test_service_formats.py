"""OpenAI response formats: words, segments, SRT and WebVTT from token timestamps."""

from __future__ import annotations

from service.formats import join_words, segments_of, to_srt, to_vtt, verbose_json, words_of
from service.schemas import TokenTime


def _t(token: str, start: float, end: float) -> TokenTime:
    return TokenTime(token=token, start=start, end=end)


TOKENS = [_t("▁hel", 0.0, 0.2), _t("lo", 0.2, 0.4), _t("▁world", 0.5, 0.9), _t("▁again", 2.0, 2.4)]


def test_words_from_sentencepiece_tokens() -> None:
    """'▁' starts a word; pieces without it continue the word; spans cover the pieces."""
    words = words_of(TOKENS)
    assert [(w.word, w.start, w.end) for w in words] == [
        ("hello", 0.0, 0.4),
        ("world", 0.5, 0.9),
        ("again", 2.0, 2.4),
    ]


def test_words_from_bpe_and_cjk_tokens() -> None:
    """'@@' glues a piece to the next; CJK characters are words joined without spaces."""
    bpe = words_of([_t("hel@@", 0, 1), _t("lo", 1, 2), _t("you", 2, 3)])
    assert [w.word for w in bpe] == ["hello", "you"]
    cjk = words_of([_t("你", 0, 1), _t("好", 1, 2)])
    assert join_words(cjk) == "你好"


def test_segments_split_at_pauses() -> None:
    """A pause of 0.6 s or more starts a new segment."""
    segs = segments_of("hello world again", TOKENS, 3.0)
    assert [(s["text"], s["start"], s["end"]) for s in segs] == [
        ("hello world", 0.0, 0.9),
        ("again", 2.0, 2.4),
    ]


def test_segments_without_timestamps() -> None:
    """Text without timestamps is one segment over the clip; no text, no segment."""
    assert segments_of("hi", [], 1.5)[0]["end"] == 1.5
    assert segments_of("", [], 1.5) == []


def test_srt_and_vtt() -> None:
    """SRT numbers blocks with comma milliseconds; WebVTT has its header and dots."""
    segs = segments_of("hello world again", TOKENS, 3.0)
    assert to_srt(segs).startswith("1\n00:00:00,000 --> 00:00:00,900\nhello world\n\n2\n")
    vtt = to_vtt(segs)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.900\nhello world\n")
    assert "00:00:02.000 --> 00:00:02.400\nagain" in vtt


def test_verbose_json_words_on_request() -> None:
    """verbose_json has OpenAI's fields, words only when asked, plus extra fields."""
    body = verbose_json("t", TOKENS, 3.0, language="en", with_words=False, extra={"v": 1})
    assert {"task", "language", "duration", "text", "segments", "v"} <= set(body)
    assert "words" not in body
    body = verbose_json("t", TOKENS, 3.0, language="en", with_words=True, extra={})
    assert [w["word"] for w in body["words"]] == ["hello", "world", "again"]
