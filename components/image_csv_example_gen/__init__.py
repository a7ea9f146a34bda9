"""ExampleGen for ads.csv spans whose rows name creative images."""
