"""The reference loop: the PyTorch DCGAN tutorial's training loop, as written there.

https://pytorch.org/tutorials/beginner/dcgan_faces_tutorial.html : a torchvision data set with
ToTensor + Normalize, a DataLoader with shuffle and 2 workers, G and D with Sigmoid + BCELoss,
Adam(lr 2e-4, betas (0.5, 0.999)), a real and a fake D pass, then the G step on the same fake,
eager, with the tutorial's `.item()` reads every iteration. The architecture is genlab's DCGAN at
the same image size (at 64 px it is the tutorial's own; at 28 px the same pattern with one stage
less), so both loops do the same arithmetic.
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.optim as optim
import torch.utils.data
import torchvision.datasets as dset
import torchvision.transforms as transforms

NZ, NGF, NDF = 100, 64, 64
WORKERS, LR, BETA1 = 2, 0.0002, 0.5


def weights_init(m):
    """The tutorial's custom weights initialization, called on netG and netD."""
    classname = m.__class__.__name__
    if classname.find('Conv') != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find('BatchNorm') != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class Generator(nn.Module):
    """The tutorial's generator; at 28 px the first stage starts at 7x7 and one x2 stage is dropped."""
    def __init__(self, nc: int, image_size: int):
        super().__init__()
        if image_size == 64:
            self.main = nn.Sequential(
                nn.ConvTranspose2d(NZ, NGF * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(NGF * 8), nn.ReLU(True),
                nn.ConvTranspose2d(NGF * 8, NGF * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF * 4), nn.ReLU(True),
                nn.ConvTranspose2d(NGF * 4, NGF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF * 2), nn.ReLU(True),
                nn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF), nn.ReLU(True),
                nn.ConvTranspose2d(NGF, nc, 4, 2, 1, bias=False), nn.Tanh())
        else:                                                                    # 28 = 7 * 2 * 2
            self.main = nn.Sequential(
                nn.ConvTranspose2d(NZ, NGF * 2, 7, 1, 0, bias=False), nn.BatchNorm2d(NGF * 2), nn.ReLU(True),
                nn.ConvTranspose2d(NGF * 2, NGF, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF), nn.ReLU(True),
                nn.ConvTranspose2d(NGF, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    """The tutorial's discriminator, ending in Sigmoid; at 28 px one stage less and a 7x7 head."""
    def __init__(self, nc: int, image_size: int):
        super().__init__()
        if image_size == 64:
            self.main = nn.Sequential(
                nn.Conv2d(nc, NDF, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 2), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(NDF * 2, NDF * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 4), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(NDF * 4, NDF * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 8), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(NDF * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())
        else:
            self.main = nn.Sequential(
                nn.Conv2d(nc, NDF, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 2), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(NDF * 2, 1, 7, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, input):
        return self.main(input)


def make_dataset(kind: str, root: str):
    """torchvision's MNIST, or an ImageFolder of faces with the tutorial's 64 px transforms."""
    if kind == "mnist":
        return dset.MNIST(root=root, train=True, download=False,
                          transform=transforms.Compose([transforms.ToTensor(),
                                                        transforms.Normalize((0.5,), (0.5,))])), 1, 28
    return dset.ImageFolder(root=root, transform=transforms.Compose([
        transforms.Resize(64), transforms.CenterCrop(64), transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])), 3, 64


def run(kind: str, root: str, batch_size: int, warmup: int, steps: int, device: str = "cpu",
        seed: int = 999) -> dict:
    """Train `warmup + steps` iterations the tutorial's way; images/s over the last `steps`."""
    torch.manual_seed(seed)
    dataset, nc, image_size = make_dataset(kind, root)
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                             num_workers=WORKERS)
    device = torch.device(device)
    netG = Generator(nc, image_size).to(device)
    netG.apply(weights_init)
    netD = Discriminator(nc, image_size).to(device)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    real_label, fake_label = 1., 0.
    optimizerD = optim.Adam(netD.parameters(), lr=LR, betas=(BETA1, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=LR, betas=(BETA1, 0.999))

    iters, started, losses = 0, time.perf_counter(), []
    while iters < warmup + steps:                       # epochs, as many as the step count needs
        for i, data in enumerate(dataloader, 0):
            if iters == warmup + steps:
                break
            ############################
            # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
            ###########################
            ## Train with all-real batch
            netD.zero_grad()
            real_cpu = data[0].to(device)
            b_size = real_cpu.size(0)
            label = torch.full((b_size,), real_label, dtype=torch.float, device=device)
            output = netD(real_cpu).view(-1)
            errD_real = criterion(output, label)
            errD_real.backward()
            D_x = output.mean().item()
            ## Train with all-fake batch
            noise = torch.randn(b_size, NZ, 1, 1, device=device)
            fake = netG(noise)
            label.fill_(fake_label)
            output = netD(fake.detach()).view(-1)
            errD_fake = criterion(output, label)
            errD_fake.backward()
            D_G_z1 = output.mean().item()
            errD = errD_real + errD_fake
            optimizerD.step()
            ############################
            # (2) Update G network: maximize log(D(G(z)))
            ###########################
            netG.zero_grad()
            label.fill_(real_label)
            output = netD(fake).view(-1)
            errG = criterion(output, label)
            errG.backward()
            D_G_z2 = output.mean().item()
            optimizerG.step()
            losses.append((errG.item(), errD.item(), D_x, D_G_z1, D_G_z2))
            iters += 1
            if iters == warmup:                         # the clock starts after the warm-up steps
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"images_per_s": steps * batch_size / seconds, "seconds": seconds,
            "last_loss_g": losses[-1][0], "last_loss_d": losses[-1][1]}
