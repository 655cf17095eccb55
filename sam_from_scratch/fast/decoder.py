"""The mask decoder with one shared image side for many prompts on one image.

The plain decoder gives every prompt its own copy of the image embedding. Without mask prompts the dense
embedding is the same for all prompts too (an expanded no_mask_embed, stride 0), so here the image side stays
one copy (batch 1) until the prompts reach it: the transformer's first image projections are then computed
once instead of B times (FastDecoderAttention broadcasts the shared side). Logits leave in float32 whatever
the model's dtype.
"""

from __future__ import annotations

from ..modeling.mask_decoder import MaskDecoder


class FastMaskDecoder(MaskDecoder):
    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output):
        masks, iou_pred = super().forward(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output
        )
        return masks.float(), iou_pred.float()  # thresholds and resizing want float32

    def predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings):
        B = sparse_prompt_embeddings.shape[0]
        if image_embeddings.shape[0] == 1 and (B == 1 or dense_prompt_embeddings.stride(0) == 0):
            dense_prompt_embeddings = dense_prompt_embeddings[:1]  # one image side for all B prompts
        return super().predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings)
