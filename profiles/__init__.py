"""edgedet.profiles: device profiles (JSON) and their loader."""
