"""Add-ons for frameworks: each is imported only by a project that uses it."""
