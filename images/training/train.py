"""SageMaker entry point (``SAGEMAKER_PROGRAM=train.py``): ResNet-50 with Horovod.

SageMaker runs this file from ``/opt/ml/code``, so its directory is on ``sys.path``
and the ``resnet_hvd`` package beside it imports directly (the shared metric format
comes from the installed ``regional_training`` package). From the repository:
``python images/training/train.py --help``.
"""

from __future__ import annotations

import sys

from resnet_hvd.train import main

if __name__ == "__main__":
    sys.exit(main())
