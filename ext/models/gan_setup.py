"""Training set-up shared by this package's GAN models: the generator's EMA copy and the discriminator."""
from basicsr.archs import build_network
from basicsr.utils import get_root_logger


def build_ema_and_discriminator(model):
    """Put ``net_g`` in training mode, build ``net_g_ema`` (``train.ema_decay`` > 0) and ``net_d``
    (``network_d``, else None), loading ``path.pretrain_network_g`` / ``pretrain_network_d`` as BasicSR's
    SRGANModel does, with ``path.param_key_d`` for the discriminator."""
    opt, train_opt = model.opt, model.opt['train']
    model.net_g.train()
    model.ema_decay = train_opt.get('ema_decay', 0)
    if model.ema_decay > 0:
        get_root_logger().info(f'Use Exponential Moving Average with decay: {model.ema_decay}')
        model.net_g_ema = build_network(opt['network_g']).to(model.device)
        load_path = opt['path'].get('pretrain_network_g')
        if load_path is not None:
            model.load_network(model.net_g_ema, load_path, opt['path'].get('strict_load_g', True), 'params_ema')
        else:
            model.model_ema(0)
        model.net_g_ema.eval()

    model.net_d = None
    if opt.get('network_d'):
        model.net_d = model.model_to_device(build_network(opt['network_d']))
        model.print_network(model.net_d)
        load_path = opt['path'].get('pretrain_network_d')
        if load_path is not None:
            model.load_network(model.net_d, load_path, opt['path'].get('strict_load_d', True),
                               opt['path'].get('param_key_d', 'params'))
        model.net_d.train()
