"""pyro_vae"""
