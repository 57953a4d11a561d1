"""The composition root: settings -> store, registry, model resolution, voiceprints, layout.

The CLI, the service and the flows each build one :class:`AppContext`
(:func:`build_context`) and get everything from it; core modules take the store, the
registry or the settings as arguments instead of reading the settings themselves.

Model resolution (:meth:`AppContext.resolve_model`), for ``kind`` ``asr`` or ``spk``:

1. ``model_dir`` given: that directory, version ``"local"``, source ``"local"``;
2. ``ref`` given, else the settings' pin (``SPEECHLOOP_ASR_VERSION`` /
   ``SPEECHLOOP_SPK_VERSION``): ``"seed"`` is the shipped seed; an alias name
   (``production``, ``previous``) or a version is fetched from the registry;
3. otherwise the registry's ``production`` alias;
4. the shipped seed only when the registry has no version of that kind at all.

No silent fallback: a store that cannot be reached, an alias that cannot be read, a
version that fails verification, or versions without a production alias raise
(StoreError / IntegrityError / NotFound / ModelUnavailable) with a message naming the
step that failed. Registry versions are fetched, every file checked against the
manifest, into ``<work_dir>/models/<kind>/<version>`` (:class:`WorkLayout`).

Engines: :meth:`AppContext.asr_engine` (:mod:`speechloop.asr.engine`) and
:meth:`AppContext.speaker_embedder` (:func:`speechloop.speaker.loading.open_embedder`)
load a resolved model with the configured backend (``SPEECHLOOP_ASR_BACKEND``,
``SPEECHLOOP_SPK_BACKEND``), device and threads. ONNX graphs come from the version
itself (:mod:`speechloop.publishing` writes them at publish time); a directory without
graphs (the shipped seed, a local directory, a version published without them) is
exported once into the layout's export cache, which needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from speechloop.config import Settings, get_settings
from speechloop.errors import ModelUnavailable, NotFound, SpeechloopError

if TYPE_CHECKING:
    from collections.abc import Callable

    from speechloop.asr.engine import HotwordAsr
    from speechloop.registry import ModelRegistry
    from speechloop.speaker.embed import EmbedConfig, SpeakerEmbedder
    from speechloop.speaker.enrol import VoiceprintStore
    from speechloop.storage.base import ObjectStore

T = TypeVar("T")

KINDS = ("asr", "spk")
SEEDS_ROOT = Path(__file__).resolve().parent / "seeds"
SEED = "seed"
SOURCES = ("local", "seed", "pinned", "production", "previous")


def seed_dir(kind: str) -> Path:
    """Directory of the shipped seed model of ``kind``."""
    return SEEDS_ROOT / _check_kind(kind)


@dataclass(frozen=True)
class ResolvedModel:
    """A model chosen for use: a local, verified copy of its files and where it came from."""

    kind: str  # "asr" | "spk"
    version: str  # registry version, "seed" or "local"
    directory: Path
    source: str  # "local" | "seed" | "pinned" | "production" | "previous"


@dataclass(frozen=True)
class WorkLayout:
    """The one layout of the work directory (``SPEECHLOOP_WORK_DIR``)::

    models/<kind>/<version>/   verified copies of registry versions
    onnx/<digest>/             ASR graphs exported from directories that carry none
    spk_onnx/                  speaker graphs exported likewise
    staging/                   versions being assembled for publication
    runs/<run_id>/             scratch of retraining runs
    (root)                     ingestion ledger caches and eval sets (speechloop.data)
    """

    root: Path

    def model_dir(self, kind: str, version: str) -> Path:
        """Where a registry version of ``kind`` is fetched."""
        return self.root / "models" / _check_kind(kind) / version

    @property
    def asr_exports(self) -> Path:
        """Cache of ASR ONNX exports (``<digest>/`` per weights and export revision)."""
        return self.root / "onnx"

    @property
    def spk_exports(self) -> Path:
        """Cache of speaker ONNX exports."""
        return self.root / "spk_onnx"

    def exports(self, kind: str) -> Path:
        """The export cache of ``kind``."""
        return self.asr_exports if _check_kind(kind) == "asr" else self.spk_exports

    @property
    def staging(self) -> Path:
        """Where versions are assembled before upload (:mod:`speechloop.publishing`)."""
        return self.root / "staging"

    def run_dir(self, run_id: str) -> Path:
        """Scratch directory of one retraining run."""
        return self.root / "runs" / run_id


class AppContext:
    """Settings and what is built from them, each built once on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: ObjectStore | None = None,
        registry: ModelRegistry | None = None,
    ) -> None:
        """``store`` / ``registry`` override what the settings would build (tests, tools)."""
        self.settings = settings
        if store is not None:
            self.__dict__["store"] = store
        if registry is not None:
            self.__dict__["registry"] = registry

    def __repr__(self) -> str:
        return f"AppContext(store={self.settings.store!r}, work_dir={str(self.layout.root)!r})"

    @cached_property
    def store(self) -> ObjectStore:
        """The object store named by the settings."""
        from speechloop.storage import open_store

        return open_store(self.settings)

    @cached_property
    def registry(self) -> ModelRegistry:
        """The model registry in the models bucket."""
        from speechloop.registry import ModelRegistry

        return ModelRegistry(self.store, self.settings.models_bucket)

    @cached_property
    def voiceprints(self) -> VoiceprintStore:
        """Enrolment audio and voiceprints in the data bucket."""
        from speechloop.speaker.enrol import VoiceprintStore

        return VoiceprintStore(self.store, self.settings.data_bucket)

    @cached_property
    def layout(self) -> WorkLayout:
        """The work-directory layout."""
        return WorkLayout(Path(self.settings.work_dir))

    # -- model resolution -------------------------------------------------------------

    def pinned_version(self, kind: str) -> str | None:
        """The settings' pin for ``kind`` (a version, an alias or ``"seed"``), if any."""
        pin = self.settings.asr_version if _check_kind(kind) == "asr" else self.settings.spk_version
        return pin.strip() if pin and pin.strip() else None

    def resolve_model(
        self, kind: str, ref: str | None = None, *, model_dir: Path | None = None
    ) -> ResolvedModel:
        """The model of ``kind`` to use (see the module docstring for the order)."""
        _check_kind(kind)
        if model_dir is not None:
            directory = Path(model_dir)
            if not directory.is_dir():
                raise ModelUnavailable(f"{kind} model directory {directory} does not exist")
            return ResolvedModel(kind, "local", directory, "local")
        named = ref if ref is not None else self.pinned_version(kind)
        if named is not None:
            return self._resolve_named(kind, named)
        alias = _step(
            kind,
            "reading the production alias",
            lambda: self.registry.get_alias(kind, "production"),
        )
        if alias is not None:
            return self._fetch(kind, alias.version, "production")
        versions = _step(kind, "listing registry versions", lambda: self._versions(kind))
        if versions:
            env = f"SPEECHLOOP_{kind.upper()}_VERSION"
            raise ModelUnavailable(
                f"cannot resolve the {kind} model: the registry has {len(versions)} "
                f"version(s) (latest {versions[-1]}) but no production alias; promote one "
                f"(speechloop models promote), pin {env}, or ask for 'seed'"
            )
        return self._seed(kind)

    def _resolve_named(self, kind: str, name: str) -> ResolvedModel:
        """A version, an alias or ``"seed"`` named by the caller or the settings."""
        if name == SEED:
            return self._seed(kind)
        source = name if name in ("production", "previous") else "pinned"
        version = _step(kind, f"resolving {name!r}", lambda: self.registry.resolve(kind, name))
        return self._fetch(kind, version, source)

    def _versions(self, kind: str) -> list[str]:
        """Complete versions of ``kind`` (none when the models bucket does not exist yet)."""
        try:
            return self.registry.list_versions(kind)
        except NotFound:
            return []

    def _fetch(self, kind: str, version: str, source: str) -> ResolvedModel:
        """A verified local copy of a registry version."""
        dest = self.layout.model_dir(kind, version)
        via = f"{source} version {version}" if source != "pinned" else f"version {version}"
        try:
            directory = _step(
                kind, f"fetching {via}", lambda: self.registry.fetch(kind, version, dest)
            )
        except NotFound as exc:
            if source == "pinned":
                raise
            raise ModelUnavailable(f"the {source} alias names a missing version: {exc}") from exc
        return ResolvedModel(kind, version, Path(directory), source)

    def _seed(self, kind: str) -> ResolvedModel:
        directory = seed_dir(kind)
        if not (directory / "model.pt").is_file():
            raise ModelUnavailable(
                f"no shipped {kind} seed at {directory}: run `speechloop bootstrap {kind}`"
            )
        return ResolvedModel(kind, SEED, directory, SEED)

    # -- engines ----------------------------------------------------------------------

    def asr_engine(
        self,
        ref: str | None = None,
        *,
        backend: str | None = None,
        model_dir: Path | None = None,
        resolved: ResolvedModel | None = None,
        allow_export: bool = True,
    ) -> HotwordAsr:
        """An ASR engine over the resolved model (``resolved`` skips resolution).

        ``allow_export=False`` (a server) refuses a model without ONNX graphs instead of
        exporting them into the layout's cache."""
        from speechloop.asr.engine import make_asr_engine

        model = resolved or self.resolve_model("asr", ref, model_dir=model_dir)
        return make_asr_engine(
            model.directory,
            backend=backend or self.settings.asr_backend,
            version=model.version,
            device=self.settings.device,
            threads=self.settings.threads,
            export_cache=self.layout.asr_exports if allow_export else None,
        )

    def speaker_embedder(
        self,
        ref: str | None = None,
        *,
        onnx: bool | None = None,
        model_dir: Path | None = None,
        config: EmbedConfig | None = None,
        resolved: ResolvedModel | None = None,
        allow_export: bool = True,
    ) -> SpeakerEmbedder:
        """A speaker embedder over the resolved model, labelled with its version (a local
        directory keeps the version its ``config.json`` names); ``allow_export`` as for
        :meth:`asr_engine`."""
        from speechloop.speaker.loading import open_embedder

        model = resolved or self.resolve_model("spk", ref, model_dir=model_dir)
        use_onnx = onnx if onnx is not None else self.settings.spk_backend == "onnx"
        return open_embedder(
            model.directory,
            onnx=use_onnx,
            version=None if model.source == "local" else model.version,
            device=self.settings.device,
            threads=self.settings.threads,
            config=config,
            export_cache=self.layout.spk_exports if allow_export else None,
        )


def build_context(settings: Settings | None = None) -> AppContext:
    """The context of this process (``settings`` default: :func:`get_settings`)."""
    return AppContext(settings if settings is not None else get_settings())


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        from speechloop.errors import InvalidInput

        raise InvalidInput(f"unknown model kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def _step(kind: str, what: str, fn: Callable[[], T]) -> T:
    """``fn()``; a speechloop error is re-raised as the same class, its message naming
    the model kind and the step (so a CLI line or a log says why resolution failed)."""
    try:
        return fn()
    except SpeechloopError as exc:
        message = f"cannot resolve the {kind} model ({what}): {exc}"
        try:
            wrapped = type(exc)(message)
        except TypeError:  # an error class with another signature: keep it as it is
            raise exc from None
        raise wrapped from exc
