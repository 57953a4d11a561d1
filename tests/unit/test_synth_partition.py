"""The partition of voices and names, and the plan built on it (no audio rendered)."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from speechloop.data.synth import CorpusSpec, name_pools, plan_corpus, voice_pools
from speechloop.data.synth.plan import PlannedSet
from speechloop.data.synth.voices import all_voices, partition_voices


def _ids(sets: list[PlannedSet], prefix: str) -> set[str]:
    return {r.speaker for s in sets if s.prefix.startswith(prefix) for r in s.rows}


def _names(sets: list[PlannedSet], prefix: str) -> set[str]:
    return {h for s in sets if s.prefix.startswith(prefix) for r in s.rows for h in r.hotwords}


def test_voice_partition_is_disjoint_complete_and_stable() -> None:
    """Every voice is in exactly one pool; the split depends on partition_seed only."""
    part = partition_voices(0)
    seen, held = {v.id for v in part.seen}, {v.id for v in part.heldout}
    assert not seen & held
    assert seen | held == {v.id for v in all_voices()}
    assert len(all_voices()) > 300
    assert {v.engine for v in part.seen[:10]} == {"espeak", "flite"}
    small = voice_pools(CorpusSpec(n_voices_seen=3, n_voices_heldout=2))
    large = voice_pools(CorpusSpec(n_voices_seen=20, n_voices_heldout=9))
    assert large[0][:3] == small[0] and large[1][:2] == small[1]
    assert partition_voices(1).heldout != part.heldout


def test_speaker_ids_are_safe_file_names() -> None:
    """Speaker ids hold only letters, digits, '-' and '_'."""
    for voice in all_voices():
        assert all(c.isalnum() or c in "-_" for c in voice.id), voice.id


def test_seen_pool_batches_never_use_heldout_voices_or_names() -> None:
    """Bootstrap-style data uses seen voices and names; eval pools are what they claim."""
    spec = CorpusSpec(batches=2, asr_per_batch=60, spk_per_batch=30, asr_eval_golden=30)
    seen_v, held_v = ({v.id for v in pool} for pool in voice_pools(spec))
    seen_n, held_n = ({n.lower() for n in pool} for pool in name_pools(spec))
    sets = plan_corpus(spec)
    assert _ids(sets, "asr/batches") | _ids(sets, "spk/batches") <= seen_v
    assert _names(sets, "asr/batches") <= seen_n
    assert _ids(sets, "asr/eval/golden") | _ids(sets, "spk/eval/golden") <= held_v
    assert _names(sets, "asr/eval/golden") <= held_n
    assert _ids(sets, "asr/eval/seen") | _ids(sets, "spk/eval/seen") <= seen_v
    assert _names(sets, "asr/eval/seen") <= seen_n
    golden = next(s for s in sets if s.prefix == "asr/eval/golden")
    assert all(len(r.hotwords) >= 1 for r in golden.rows)


def test_extra_names_reach_only_seen_pool_batches_and_share_no_word() -> None:
    """Training-only names (``n_names_extra``) appear in seen-pool batches, never in an
    evaluation set or a held-out-pool batch, share no word with any partition name, and
    leave the evaluation sets exactly as they were."""
    from speechloop.data.synth.spec import extra_names, name_partition

    base = CorpusSpec(batches=2, asr_per_batch=80, asr_eval_golden=30, asr_eval_seen=30)
    spec = base.updated({"n_names_extra": 300})
    extra = {n.lower() for n in extra_names(spec)}
    assert len(extra) == 300 and extra_names(spec) == extra_names(spec)
    seen_all, held_all = name_partition(spec.partition_seed)
    words = lambda names: {w.lower() for n in names for w in n.split()}  # noqa: E731
    assert not words(extra) & words(seen_all + held_all)
    sets = plan_corpus(spec)
    assert _names(sets, "asr/batches") & extra
    assert not _names(sets, "asr/eval") & extra
    evals = [s for s in sets if s.is_eval]
    assert evals == [s for s in plan_corpus(base) if s.is_eval]
    held = plan_corpus(CorpusSpec.preset("finetune").updated({"n_names_extra": 300}))
    assert not _names(held, "asr/batches") & extra


def test_head_pool_names_are_their_own_and_reach_no_other_batch() -> None:
    """Head-only names (``n_names_head``, pool "head") follow the extra names: disjoint
    from them and from every partition name (no shared word); head-pool batches use
    seen voices and only those names; seen-pool batches never carry them."""
    from speechloop.data.synth.spec import extra_names, head_names, name_partition

    spec = CorpusSpec(batches=2, asr_per_batch=80, n_names_extra=200, n_names_head=150)
    head = {n.lower() for n in head_names(spec)}
    extra = {n.lower() for n in extra_names(spec)}
    assert len(head) == 150 and not head & extra
    seen_all, held_all = name_partition(spec.partition_seed)
    words = lambda names: {w.lower() for n in names for w in n.split()}  # noqa: E731
    assert not words(head) & words(seen_all + held_all)
    seen_sets = plan_corpus(spec)
    assert not _names(seen_sets, "asr") & head
    head_sets = plan_corpus(spec.updated({"pool": "head", "with_eval": False}))
    assert _names(head_sets, "asr/batches") <= head and _names(head_sets, "asr/batches")
    assert _ids(head_sets, "asr/batches") <= {v.id for v in voice_pools(spec)[0]}
    with pytest.raises(ValidationError, match="n_names_head"):
        spec.updated({"pool": "head", "n_names_head": 0})


def test_heldout_pool_batches_use_only_heldout_and_avoid_eval_sentences() -> None:
    """Fine-tuning batches: held-out voices/names, never a sentence of the eval sets."""
    spec = CorpusSpec.preset("finetune").updated({"batches": 2, "asr_per_batch": 80})
    held_v = {v.id for v in voice_pools(spec)[1]}
    held_n = {n.lower() for n in name_pools(spec)[1]}
    sets = plan_corpus(spec)
    assert all(not s.is_eval for s in sets), "finetune preset writes no eval sets"
    assert _ids(sets, "asr/batches") | _ids(sets, "spk/batches") <= held_v
    assert _names(sets, "asr/batches") <= held_n
    eval_texts = {
        r.text for s in plan_corpus(spec.updated({"with_eval": True}))
        if s.prefix.startswith("asr/eval") for r in s.rows
    }  # fmt: skip
    batch_texts = {r.text for s in sets if s.kind == "asr" for r in s.rows}
    assert eval_texts and not batch_texts & eval_texts


def test_batches_are_the_same_whichever_range_is_generated() -> None:
    """Batch 0003 is identical whether batches 1-3 or only batch 3 are planned."""
    full = plan_corpus(CorpusSpec(batches=3, with_eval=False))
    part = plan_corpus(CorpusSpec(batches=1, first_batch=3, with_eval=False))
    assert [s for s in full if s.prefix.endswith("-0003")] == part


def test_trials_are_balanced_and_consistent_with_speakers() -> None:
    """Targets are all same-speaker pairs, nontargets as many different-speaker pairs."""
    sets = plan_corpus(CorpusSpec(spk_eval_utts=4, batches=0))
    for name in ("spk/eval/golden", "spk/eval/seen"):
        spk = next(s for s in sets if s.prefix == name)
        speaker = {r.id: r.speaker for r in spk.rows}
        targets = [t for t in spk.trials if t.target]
        nontargets = [t for t in spk.trials if not t.target]
        n_speakers = len(set(speaker.values()))
        assert len(targets) == n_speakers * len(list(itertools.combinations(range(4), 2)))
        assert len(nontargets) == len(targets)
        for t in spk.trials:
            assert t.enrol in speaker and t.test in speaker and t.enrol != t.test
            assert t.target == (speaker[t.enrol] == speaker[t.test])
        assert len({(t.enrol, t.test) for t in spk.trials}) == len(spk.trials)


def test_spec_rejects_bad_settings() -> None:
    """Reversed ranges, unknown or overlapping explicit voices are validation errors."""
    with pytest.raises(ValidationError, match="rate_range"):
        CorpusSpec(rate_range=(1.2, 0.8))
    with pytest.raises(ValidationError, match="unknown synthetic voice"):
        CorpusSpec(voices_seen=("espeak_xx_m1",))
    with pytest.raises(ValidationError, match="overlap"):
        CorpusSpec(voices_seen=("flite_slt",), voices_heldout=("flite_slt", "flite_kal"))
    with pytest.raises(ValidationError, match="spk_eval_utts"):
        CorpusSpec(spk_eval_utts=1)
    with pytest.raises(ValidationError, match="n_voices_seen"):
        CorpusSpec.preset("tiny").updated({"n_voices_seen": 0})
    with pytest.raises(ValueError, match="unknown preset"):
        CorpusSpec.preset("huge")  # type: ignore[arg-type]


def test_the_unseen_voices_set_uses_voices_of_no_pool_and_no_batch() -> None:
    """``n_voices_unseen`` adds ``spk/eval/unseen`` (targets and non-targets) of voices in
    neither pool, so no batch of either pool has them; the other sets are unchanged."""
    from speechloop.data.synth import UNSEEN_SET, unseen_voices

    base = CorpusSpec(n_voices_heldout=4, batches=1, spk_per_batch=24, spk_eval_utts=3)
    spec = base.updated({"n_voices_unseen": 5})
    unseen = {v.id for v in unseen_voices(spec)}
    assert len(unseen) == 5 and unseen <= {v.id for v in partition_voices(0).heldout}
    for pool in ("seen", "heldout"):
        sets = plan_corpus(spec.updated({"pool": pool}))
        assert not unseen & (_ids(sets, "asr/batches") | _ids(sets, "spk/batches"))
        assert not unseen & _ids(sets, "spk/eval/golden")
    by_prefix = {s.prefix: s for s in plan_corpus(spec)}
    assert _ids(list(by_prefix.values()), UNSEEN_SET) == unseen
    assert {t.target for t in by_prefix[UNSEEN_SET].trials} == {True, False}
    before = {s.prefix: s for s in plan_corpus(base)}
    assert UNSEEN_SET not in before
    assert all(before[k] == by_prefix[k] for k in before)
    with pytest.raises(ValidationError, match="unseen"):
        CorpusSpec(n_voices_heldout=130, n_voices_unseen=120)
