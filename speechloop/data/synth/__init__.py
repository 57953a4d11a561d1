"""The synthetic labelled speech corpus: many voices, a grammar, invented-name hotwords.

Stable public API (import from ``speechloop.data.synth``)::

    from speechloop.data.synth import CorpusSpec, generate_corpus, vocabulary
    from speechloop.storage.local import LocalStore

    spec = CorpusSpec.preset("bootstrap")            # "tiny" | "demo" | "bootstrap" | "finetune"
    spec = spec.updated({"seed": 1})                  # any field below; validated
    report = generate_corpus(LocalStore(root), "speech-data", spec, progress=True)
    report.asr_batches, report.eval_sets, report.utterances_per_s

- :class:`CorpusSpec` (frozen pydantic model; ``CorpusSpec.preset(name)``,
  ``spec.updated({...})``): ``seed`` (batches: sentences, voices per utterance,
  variation, formats) and ``partition_seed`` (which voices and names are seen/held-out,
  and the golden eval sets; keep it fixed across bootstrap, fine-tuning, evaluation);
  ``n_voices_seen/n_voices_heldout`` or explicit ``voices_seen/voices_heldout`` ids;
  ``n_voices_unseen`` (voices of ``spk/eval/unseen``, in neither pool);
  ``n_names_seen/n_names_heldout``; ``n_names_extra`` (training-only names of the
  seen pool); ``n_names_head`` (names of the "head" pool only); ``pool`` ("seen" |
  "heldout" | "head": what batches draw from; "head" is seen voices with the head-only
  names, for the seed's hotword stage); ``batch_prefix``, ``first_batch``, ``batches``,
  ``asr_per_batch``, ``spk_per_batch``, ``asr_voices`` (cap); ``hotword_rate``, ``two_name_rate``,
  ``valid_fraction`` (batch rows with ``"split": "eval"``, for validation);
  ``with_eval``, ``asr_eval_golden``, ``asr_eval_seen``, ``spk_eval_utts`` (per
  speaker); ``rate_range``, ``pitch_range_st``, ``noise_prob``, ``noise_kinds``,
  ``snr_db_range``, ``gain_db_range``; ``flac_fraction``, ``mp3_fraction``; ``workers``.
- :func:`generate_corpus` ``(store, bucket, spec, *, progress=False, overwrite=False)
  -> CorpusReport`` (batch ids, eval sets, counts, audio seconds, seconds,
  ``utterances_per_s``). Sets whose manifest exists are skipped unless ``overwrite``.
- :func:`vocabulary` ``(spec) -> Vocabulary``: ``words``, ``seen_names``,
  ``heldout_names``, ``all_names`` (hotwords in transcript form) and ``charset``.
- :func:`voice_pools` ``(spec) -> (seen, heldout)`` voices (``Voice.id`` is the speaker id);
  :func:`unseen_voices` ``(spec)``: the unseen set's voices.
- :func:`normalise_text`, :data:`CHARSET`, :data:`EVAL_SETS`, :data:`UNSEEN_SET`,
  :func:`plan_corpus`
  (the rows without rendering audio).

What lands in the bucket (the contract layout of DESIGN.md)::

    asr/batches/<prefix>-0001/manifest.jsonl  {"id","audio","text","hotwords","split"}
    spk/batches/<prefix>-0001/manifest.jsonl  {"id","audio","speaker","split"}
    asr/eval/golden/   held-out voices, held-out names, every row has >= 1 hotword
    asr/eval/seen/     seen voices, seen names (forgetting)
    spk/eval/golden/   held-out voices, + trials.txt "<enrol_id> <test_id> target|nontarget"
    spk/eval/seen/     seen voices, + trials.txt
    spk/eval/unseen/   (n_voices_unseen > 0) voices of no pool and no batch, + trials.txt:
                       the speaker gate's open-set guard
    .../audio/<id>.wav|.flac|.mp3   16 kHz mono; batches mix formats, eval sets are WAV

Audio is uploaded first and each manifest last. Row ids are unique across the corpus
(``<batch_id>-a0001`` ASR, ``<batch_id>-s0001`` speaker, ``eval-asr-golden-0001``, ...).
The golden sets depend on ``partition_seed`` and the eval sizes, not on ``seed``, and
batches never repeat a sentence of them.

Transcripts (``text``) are normalised: lower-case ``a``-``z``, apostrophes inside words,
single spaces (see :mod:`speechloop.data.synth.grammar`). ``hotwords`` lists, in order,
exactly the invented names in ``text`` (normalised; a two-word name such as
``"kalo venturi"`` is one hotword). No name word is an English word of the grammar and
no word is shared by two names. Speaker ids look like ``espeak_en-us_m3`` or
``flite_slt``. The same spec gives byte-identical manifests and audio.

Presets (utterances; voices seen/held-out): ``tiny`` (1 batch of 8+8, small eval; for
tests), ``demo`` (2 x 40+40; 8/4; 8 unseen), ``bootstrap`` (10 x 150 ASR + 10 x 100 speaker from 24
seen voices and 60 seen names; eval 120 + 120 ASR, 6 per speaker), ``finetune``
(prefix ``new``, 4 x 100 + 80 from the 8 held-out voices and 30 held-out names; no
eval written, but the same eval plan as ``bootstrap`` so sentences never overlap it).
"""

from __future__ import annotations

from speechloop.data.synth.corpus import CorpusReport, generate_corpus
from speechloop.data.synth.grammar import CHARSET, normalise_text
from speechloop.data.synth.plan import EVAL_SETS, UNSEEN_SET, plan_corpus
from speechloop.data.synth.spec import (
    PRESETS,
    CorpusSpec,
    Vocabulary,
    name_pools,
    unseen_voices,
    vocabulary,
    voice_pools,
)
from speechloop.data.synth.voices import Voice, all_voices

__all__ = [
    "CHARSET",
    "EVAL_SETS",
    "PRESETS",
    "UNSEEN_SET",
    "CorpusReport",
    "CorpusSpec",
    "Vocabulary",
    "Voice",
    "all_voices",
    "generate_corpus",
    "name_pools",
    "normalise_text",
    "plan_corpus",
    "unseen_voices",
    "vocabulary",
    "voice_pools",
]
