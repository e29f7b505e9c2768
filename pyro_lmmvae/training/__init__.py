"""Training: the ELBO as a torch module and the fitting loop."""
