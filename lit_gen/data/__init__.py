"""LightningDataModules that read each dataset's real on-disk format. Images leave in [-1, 1], labels as int64."""
