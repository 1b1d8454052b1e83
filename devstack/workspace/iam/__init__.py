"""Identities of the workspace (SCIM), sign-in (PAT, Entra ID, OAuth M2M) and short-lived tokens."""
