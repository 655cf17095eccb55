"""Helpers around the model, under the official module paths: `transforms` (ResizeLongestSide, masks back to the
original size), `amg` (the automatic mask generator's pieces: point grids, MaskData, boxes, RLE) and `onnx`
(SamOnnxModel, the prompt side written for ONNX export). Nothing is imported here, so that importing one of them
does not import the others."""
