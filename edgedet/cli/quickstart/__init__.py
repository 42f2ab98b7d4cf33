"""`edgedet quickstart`: the main job in one command (profile this machine, search for two
devices, train briefly, export behind the parity gate, bench, predict, report), resumable."""
