"""The model families flowspec ships; importing this package registers them
(:data:`flowspec.family.FAMILIES`). A new family is one module here."""

from flowspec.families import flow, hvae, vae  # noqa: F401
