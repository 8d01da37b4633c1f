"""Pretext tasks: four ways to make labels out of unlabelled images.

Self-supervised learning invents a task whose answers are in the data itself, trains an
encoder on it, and keeps the encoder. The survey of Ericsson et al. (2022) sorts pretext
tasks into four families; each has a tiny runnable example here, all training the same
small :class:`ConvEncoder` on digits:

- **transformation prediction** — rotate each image by 0/90/180/270° and predict the
  rotation (Gidaris et al. 2018, RotNet): :class:`RotationPretext`.
- **masked prediction** — hide random blocks of pixels and reconstruct them (Pathak et al.
  2016, context encoders; BERT and MAE are the same idea at scale): :class:`MaskedPixelPretext`.
  Hidden pixels are set to :data:`MASK_FILL`, a value outside the data range, so that a
  hidden block differs from blank background.
- **instance discrimination** — two augmented views of an image must be closer to each other
  than to every other image in the batch, with the InfoNCE loss (SimCLR, Chen et al. 2020;
  contrastive learning is this family's best-known member): :class:`ContrastivePretext`.
- **clustering** — cluster the current features with k-means and learn to predict the cluster
  ids as pseudo-labels, alternately (a simplified DeepCluster, Caron et al. 2018: no
  PCA-whitening of the features, no cluster-balanced sampling): :func:`deepcluster`.

:func:`train_pretext` runs any family by name with :func:`lfd13.train.train`. The encoder is
read at two layers (:data:`LAYERS`), its output and the last convolution's feature map,
because the best layer for a probe depends on the pretext task (Gidaris et al. 2018 find
their best rotation features in an intermediate block). A trained task is saved with
:func:`lfd13.shipped.save_model` (its config: :func:`task_config`) and read back with
:func:`load_pretext_task`. Shapes: B batch, H×W image, D feature width, C classes.
"""

from lfd13.pretext.encoder import *  # noqa: F403
from lfd13.pretext.encoder import __all__ as _encoder
from lfd13.pretext.tasks import *  # noqa: F403
from lfd13.pretext.tasks import __all__ as _tasks
from lfd13.pretext.training import *  # noqa: F403
from lfd13.pretext.training import __all__ as _training

__all__ = [*_encoder, *_tasks, *_training]
