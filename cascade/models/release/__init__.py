"""Import of the published LaVie checkpoints (``lavie_base.pt``, ``lavie_interpolation.pt``,
``lavie_vsr.pt``) as ``cascade.models`` folders: the release's architectures are settings of the
architecture options (:mod:`cascade.models.options`), its key layout is mapped in :mod:`.stages`."""

from cascade.models.release.importer import import_release
from cascade.models.release.stages import RELEASE_STAGES, TRAINING_SCHEDULE, identify_stage

__all__ = ["RELEASE_STAGES", "TRAINING_SCHEDULE", "identify_stage", "import_release"]
