"""Evaluation: feature extractors (Inception, domain classifier), FID/KID/IS, cached reference statistics.

``features`` builds extractors, ``fid`` holds the Fréchet distance and the torchmetrics wrappers,
``reference`` caches the real images' statistics, ``sampling`` draws samples for evaluation,
``protocol`` defines the record written with every FID value and ``classifier`` trains the
offline domain classifier. Importing this package imports none of them.
"""
