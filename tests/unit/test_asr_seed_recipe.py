"""The seed recipe's corpus: main and hotword-stage-only batches in one private store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from speechloop.asr.seed_recipe import corpus_dir, corpus_rows, split_head_rows

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("flite") is None,
    reason="espeak-ng and flite are needed to synthesise speech (apt-get install them)",
)

UPDATE = {
    "n_voices_seen": 4, "n_voices_heldout": 2, "n_names_seen": 8, "n_names_heldout": 4,
    "n_names_extra": 6, "batches": 2, "asr_per_batch": 5, "asr_eval_golden": 3,
    "asr_eval_seen": 3, "hotword_rate": 0.8,
}  # fmt: skip
HEAD = {"pool": "head", "n_names_head": 5, "hotword_rate": 1.0, "batch_prefix": "hwboot",
        "batches": 1, "with_eval": False}  # fmt: skip


def test_head_batches_join_the_store_and_are_told_apart(tmp_path: Path) -> None:
    """corpus_rows writes the main and the head-only batches; every call returns all
    ingested rows (not only those it ingested itself); split_head_rows separates them
    by batch prefix, and no head-only name occurs in a main row."""
    work = corpus_dir(tmp_path, "bootstrap", 0, UPDATE, (HEAD,))
    assert work != corpus_dir(tmp_path, "bootstrap", 0, UPDATE, ())
    main_only, golden = corpus_rows("bootstrap", work, 0, UPDATE)
    assert len(main_only) == 10 and len(golden) == 3
    rows, _ = corpus_rows("bootstrap", work, 0, UPDATE, head_updates=(HEAD,))
    assert len(rows) == 15
    main, head = split_head_rows(rows, HEAD)
    assert [r.id for r in main] == [r.id for r in main_only] and len(head) == 5
    assert all(r.hotwords for r in head)
    main_names = {h for r in main for h in r.hotwords}
    assert not main_names & {h for r in head for h in r.hotwords}


def test_head_corpora_with_the_same_batch_ids_keep_their_own_stores(tmp_path: Path) -> None:
    """A second head-only corpus whose batch ids repeat the first's goes into its own
    store: both sets of rows come back, the first's before the second's, each as it is
    when generated alone."""
    more = {**HEAD, "n_names_head": 9, "batches": 2}
    work = tmp_path / "both"
    rows, _ = corpus_rows("bootstrap", work, 0, UPDATE, head_updates=(HEAD, more))
    _, head = split_head_rows(rows, HEAD)
    alone, _ = corpus_rows("bootstrap", tmp_path / "alone", 0, UPDATE, head_updates=(more,))
    _, head_alone = split_head_rows(alone, HEAD)
    assert len(head) == 5 + 10 and (work / "head-1" / "store").is_dir()
    assert head[5].batch_id == head[0].batch_id  # ids repeat across the two corpora
    assert [(r.id, r.text) for r in head[5:]] == [(r.id, r.text) for r in head_alone]
    assert [(r.id, r.text) for r in head[:5]] != [(r.id, r.text) for r in head_alone[:5]]


def test_more_batches_keep_the_first_ones_and_base_rows_picks_them(tmp_path: Path) -> None:
    """A corpus with more batches starts with the same batches as a smaller one (the seed's
    ASR stage reads the first ones, the refine stage all of them), and base_rows picks
    exactly the rows of the first batches by batch id."""
    from speechloop.asr.seed_recipe import base_rows

    small, _ = corpus_rows("bootstrap", tmp_path / "small", 0, UPDATE)
    large, _ = corpus_rows("bootstrap", tmp_path / "large", 0, {**UPDATE, "batches": 3})
    first = base_rows(large, 2)
    assert len({r.batch_id for r in large}) == 3
    assert [(r.batch_id, r.text, r.hotwords) for r in first] == [
        (r.batch_id, r.text, r.hotwords) for r in small
    ]
    assert base_rows(large, 3) == large
