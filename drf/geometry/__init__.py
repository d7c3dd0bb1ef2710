"""Geometry shared by the toy world and the geometry rewards: camera math in OpenCV axes (x right, y down, z forward)."""
