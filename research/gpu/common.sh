# Device-side set-up shared by the calls: sourced with the commit as $1.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,temperature.gpu --format=csv | tee -a $OUT/env.txt
echo "cpus $(nproc)" | tee -a $OUT/env.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:$PWD/.gpu/site:/tmp/site PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore LLMBO_GIT_COMMIT=$1
python3 .gpu/model_to_float32.py | tee -a $OUT/env.txt
python3 -c "import torch,transformers,peft,gpytorch,botorch,pandas,sqlalchemy;print(torch.__version__,transformers.__version__,peft.__version__,gpytorch.__version__,botorch.__version__,pandas.__version__,sqlalchemy.__version__,torch.cuda.get_device_name())" | tee -a $OUT/env.txt
date -u | tee -a $OUT/env.txt
