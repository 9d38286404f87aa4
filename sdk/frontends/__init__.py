"""sdk.frontends"""
