"""Component records of the on-disk file system drivers, kept outside the driver packages so
that registering a driver does not import it: each module here registers lazy stand-ins with a
cheap probe, and the driver package is imported the first time it is needed."""
