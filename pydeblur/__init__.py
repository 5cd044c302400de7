"""pydeblur: non-blind image deblurring with a Wiener-deconvolution bank and a ResBlock CNN."""

__version__ = "0.1.0"
