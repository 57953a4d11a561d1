"""The BentoML service: hotword ASR and speaker verification over REST.

Thin adapters over the core (:mod:`speechloop`): three BentoML services composed with
``bentoml.depends`` (see :mod:`service.app`):

- :class:`service.asr.AsrService`: the ASR engine, adaptive batching, hot swap;
- :class:`service.speaker.SpeakerService`: the speaker embedder and voiceprints, hot swap;
- :class:`service.app.Gateway`: the HTTP surface (``/v1/...``, the OpenAI-compatible
  route, ``/docs``), API keys, size limits, audio decoding, error mapping.

Nothing here runs at import time: settings, stores and models are built when a
service instance starts.
"""
