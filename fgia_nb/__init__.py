__version__ = "0.1.0"

import warnings
# fastai 2.8's layers call torch.jit.script at import, which torch 2.14 deprecates: one line in every log, nothing to act on
warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)
