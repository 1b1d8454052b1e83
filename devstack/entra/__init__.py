"""A local stand-in for Microsoft Entra ID (client-credentials tokens, JWKS, managed identity)."""
