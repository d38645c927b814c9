"""The reference device image: a Debian-based VM image with a real A/B boot.

``eden image build`` makes it (:mod:`eden.image.build`); :mod:`eden.image.bootstate` is the
boot-state partition format shared by the initramfs boot stage and the agent in the guest.
See docs/reference-image.md.
"""
