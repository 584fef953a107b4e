"""Every Dagster definition of the code location: partitions, assets, checks, sensors and
resources, one module each; `glisk_pipeline.definitions` composes them."""
