"""sdk.profile"""
