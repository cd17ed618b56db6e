"""What every model family shares, and nothing family-specific: the model protocol
(:mod:`.protocol`), the check result (:mod:`.check`), the build table's row (:mod:`.build`), the
cost report's parts (:mod:`.costs`) and the latent tools with their codec (:mod:`.latents`).

A family (``flow``: :mod:`flowspec.compile`, ``vae``: :mod:`flowspec.vae`) imports these and sits
beside the other families; none imports another family's package.
"""
