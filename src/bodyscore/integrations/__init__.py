"""Known-region cropping inside training pipelines (thesis sec. 4.3.2).

* :mod:`bodyscore.integrations.monai` — ``CropToBodyRegiond``, a MONAI dictionary transform
  (``pip install bodyscore[monai]``).
* :mod:`bodyscore.integrations.torchio` — ``CropToBodyRegion``, a TorchIO transform
  (``pip install bodyscore[torchio]``).

Both score the CT once per subject through :func:`bodyscore.predict`, crop image and label
together on the kept slices and are inverted the library's own way (MONAI ``Invertd`` /
``inverse``; TorchIO ``Subject.apply_inverse_transform``), so a prediction on the crop is
pasted back into the full grid. Nothing here is imported by ``import bodyscore``.
"""
