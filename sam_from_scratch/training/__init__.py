"""Training SAM from scratch on generated scenes.

    scenes.py      the data engine: scenes whose instance masks are known exactly
    prompts.py     simulated users: first prompts and corrective clicks
    losses.py      SAM's focal + dice + IoU-prediction loss
    forward.py     the model on many images and prompts at once, with gradients
    loop.py        the recipe (TrainConfig), one step's loss, the training run over one or more workers
    evaluation.py  the model card's figures on held-out scenes
    tiny.py        the bundled small model: `train_tiny` retrains it and writes its checkpoint and card
    datasets.py    your own images and masks: COCO instance JSON, or images/ + masks/ folders
    finetune.py    `finetune`: a trained SAM's decoder (optionally adapters) on your data, resumable, under torchrun
    stars.py       a kind of object the small model never saw, for the fine-tuning demonstration
"""

from .datasets import InstanceDataset, load_dataset
from .evaluation import evaluate
from .finetune import finetune
from .losses import SamLoss, dice_loss, mask_iou, sam_loss, sigmoid_focal_loss
from .loop import TrainConfig, batch_loss, lr_factor, make_optimizer, prompt_generator, train, training_batch, training_loss
from .scenes import HELDOUT_SEED, TRAIN_SEED, Scene, SceneConfig, SceneDataset, make_scene
from .tiny import train_tiny, write_card

__all__ = [
    "HELDOUT_SEED",
    "TRAIN_SEED",
    "SamLoss",
    "Scene",
    "SceneConfig",
    "SceneDataset",
    "TrainConfig",
    "batch_loss",
    "dice_loss",
    "evaluate",
    "finetune",
    "InstanceDataset",
    "load_dataset",
    "lr_factor",
    "make_optimizer",
    "make_scene",
    "prompt_generator",
    "mask_iou",
    "sam_loss",
    "sigmoid_focal_loss",
    "train",
    "train_tiny",
    "training_batch",
    "training_loss",
    "write_card",
]
