"""The detector: backbone builder, head, targets, losses and meta-architecture.
Importing it registers ``LadaFCOS`` and ``build_fcos_resnet_fpn_backbone``."""
from .backbone import build_fcos_resnet_fpn_backbone
from .head import FCOSHead
from .losses import DenseDetectionLoss
from .meta_arch import LadaFCOS

__all__ = ["DenseDetectionLoss", "FCOSHead", "LadaFCOS", "build_fcos_resnet_fpn_backbone"]
