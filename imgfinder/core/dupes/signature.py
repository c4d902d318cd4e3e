"""The duplicate signature lives in `imgfinder.core.imagesig` (extraction and the duplicate
finder both use it, without importing each other's packages). This name is the same module
object, for code written against the old place."""

import sys

from imgfinder.core import imagesig

sys.modules[__name__] = imagesig
