"""Conditions: image/text encoders (open_clip, timm, our DINO), embedding an image store, zero-shot.

``encoders.py``  load_encoder(kind, model, checkpoint, device) -> Encoder
``images.py``    embed an image store into ``embeddings.h5`` (resumable) and read it back aligned
``text.py``      prompt embeddings (``text_embeddings.h5``) and the zero-shot head
``democlip.py``  the demo's own small CLIP, built and trained with open_clip
"""
