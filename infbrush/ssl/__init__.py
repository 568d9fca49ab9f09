"""Self-supervised pre-training of the condition encoder: DINO (Caron et al., 2021) with lightly and timm.

``dino.py``   student/teacher ViT + DINO head, the checkpoint format of ``dino.pt``
``train.py``  the resumable, DDP-capable training loop (``infbrush train-dino``)
``knn.py``    labelled train/held-out split and the k-NN accuracy probe
"""
