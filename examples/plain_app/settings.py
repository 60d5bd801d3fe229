"""Read ``settings.json`` once, at import time: a reload reads it again."""

from __future__ import annotations

import json
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "settings.json")

with open(PATH, encoding="utf-8") as file:
    SETTINGS = json.load(file)
