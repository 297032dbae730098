"""(being written)"""

from flask import Blueprint

bp = Blueprint("devportal_inspect", __name__, url_prefix="/_dev")
