"""Tools around the product: the SMSC simulator and its client, the load generator, the bench, demo data.

The product never imports this package.
"""
