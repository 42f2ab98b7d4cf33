"""edgedet.profiles: device profiles (JSON) and their loader."""

from edgedet.profiles.loader import PROFILE_DIR, Profile, from_document, load_profile, shipped_ids
from edgedet.profiles.schema import SCHEMA_VERSION, validate

__all__ = [
    "PROFILE_DIR",
    "Profile",
    "SCHEMA_VERSION",
    "from_document",
    "load_profile",
    "shipped_ids",
    "validate",
]
