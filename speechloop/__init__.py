"""speechloop: serve customised speech models and keep them improving.

The domain core. It imports neither bentoml nor prefect: ``service/`` and ``flows/``
are thin adapters over it.
"""

__version__ = "0.1.0"
