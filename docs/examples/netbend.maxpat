{
 "patcher": {
  "fileversion": 1,
  "appversion": {
   "major": 8,
   "minor": 5,
   "revision": 0,
   "architecture": "x64",
   "modernui": 1
  },
  "classnamespace": "box",
  "rect": [
   80,
   80,
   1300,
   800
  ],
  "boxes": [
   {
    "box": {
     "id": "udpsend",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      40,
      700,
      160,
      22
     ],
     "text": "udpsend 127.0.0.1 9000"
    }
   },
   {
    "box": {
     "id": "udprecv",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      700,
      40,
      120,
      22
     ],
     "text": "udpreceive 9001"
    }
   },
   {
    "box": {
     "id": "route_top",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 7,
     "patching_rect": [
      700,
      80,
      520,
      22
     ],
     "text": "route /netbend/bend/1/amount /netbend/bend/2/amount /netbend/bend/3/amount /netbend/bend/4/amount /netbend/prompt /netbend/error"
    }
   },
   {
    "box": {
     "id": "amount1",
     "maxclass": "slider",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      40,
      60,
      20,
      22
     ],
     "size": 1.0,
     "floatoutput": 1,
     "parameter_enable": 0
    }
   },
   {
    "box": {
     "id": "amount1_msg",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      40,
      240,
      150,
      22
     ],
     "text": "/netbend/bend/1/amount $1"
    }
   },
   {
    "box": {
     "id": "op1",
     "maxclass": "umenu",
     "numinlets": 1,
     "numoutlets": 3,
     "patching_rect": [
      40,
      280,
      120,
      22
     ],
     "items": [
      "rotate",
      "R1",
      "add",
      "multiply",
      "threshold_abs",
      "invert",
      "scale",
      "translate",
      "rotate_spatial",
      "erode",
      "dilate",
      "sobel",
      "mix",
      "noise",
      "ablate"
     ]
    }
   },
   {
    "box": {
     "id": "op1_msg",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      40,
      310,
      150,
      22
     ],
     "text": "prepend /netbend/bend/1/operator"
    }
   },
   {
    "box": {
     "id": "layer1",
     "maxclass": "umenu",
     "numinlets": 1,
     "numoutlets": 3,
     "patching_rect": [
      40,
      350,
      120,
      22
     ],
     "items": [
      "latent",
      "conv_in",
      "down.0",
      "down.1",
      "down.2",
      "down.3",
      "mid",
      "up.0",
      "up.1",
      "up.2",
      "up.3",
      "conv_out"
     ]
    }
   },
   {
    "box": {
     "id": "layer1_msg",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      40,
      380,
      150,
      22
     ],
     "text": "prepend /netbend/bend/1/layer"
    }
   },
   {
    "box": {
     "id": "enable1",
     "maxclass": "toggle",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      40,
      420,
      20,
      22
     ]
    }
   },
   {
    "box": {
     "id": "enable1_msg",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      40,
      450,
      150,
      22
     ],
     "text": "/netbend/bend/1/enable $1"
    }
   },
   {
    "box": {
     "id": "fb1",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      700,
      130,
      60,
      22
     ],
     "text": "set $1"
    }
   },
   {
    "box": {
     "id": "amount2",
     "maxclass": "slider",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      200,
      60,
      20,
      22
     ],
     "size": 1.0,
     "floatoutput": 1,
     "parameter_enable": 0
    }
   },
   {
    "box": {
     "id": "amount2_msg",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      200,
      240,
      150,
      22
     ],
     "text": "/netbend/bend/2/amount $1"
    }
   },
   {
    "box": {
     "id": "op2",
     "maxclass": "umenu",
     "numinlets": 1,
     "numoutlets": 3,
     "patching_rect": [
      200,
      280,
      120,
      22
     ],
     "items": [
      "rotate",
      "R1",
      "add",
      "multiply",
      "threshold_abs",
      "invert",
      "scale",
      "translate",
      "rotate_spatial",
      "erode",
      "dilate",
      "sobel",
      "mix",
      "noise",
      "ablate"
     ]
    }
   },
   {
    "box": {
     "id": "op2_msg",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      200,
      310,
      150,
      22
     ],
     "text": "prepend /netbend/bend/2/operator"
    }
   },
   {
    "box": {
     "id": "layer2",
     "maxclass": "umenu",
     "numinlets": 1,
     "numoutlets": 3,
     "patching_rect": [
      200,
      350,
      120,
      22
     ],
     "items": [
      "latent",
      "conv_in",
      "down.0",
      "down.1",
      "down.2",
      "down.3",
      "mid",
      "up.0",
      "up.1",
      "up.2",
      "up.3",
      "conv_out"
     ]
    }
   },
   {
    "box": {
     "id": "layer2_msg",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      200,
      380,
      150,
      22
     ],
     "text": "prepend /netbend/bend/2/layer"
    }
   },
   {
    "box": {
     "id": "enable2",
     "maxclass": "toggle",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      200,
      420,
      20,
      22
     ]
    }
   },
   {
    "box": {
     "id": "enable2_msg",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      200,
      450,
      150,
      22
     ],
     "text": "/netbend/bend/2/enable $1"
    }
   },
   {
    "box": {
     "id": "fb2",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      790,
      130,
      60,
      22
     ],
     "text": "set $1"
    }
   },
   {
    "box": {
     "id": "amount3",
     "maxclass": "slider",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      360,
      60,
      20,
      22
     ],
     "size": 1.0,
     "floatoutput": 1,
     "parameter_enable": 0
    }
   },
   {
    "box": {
     "id": "amount3_msg",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      360,
      240,
      150,
      22
     ],
     "text": "/netbend/bend/3/amount $1"
    }
   },
   {
    "box": {
     "id": "op3",
     "maxclass": "umenu",
     "numinlets": 1,
     "numoutlets": 3,
     "patching_rect": [
      360,
      280,
      120,
      22
     ],
     "items": [
      "rotate",
      "R1",
      "add",
      "multiply",
      "threshold_abs",
      "invert",
      "scale",
      "translate",
      "rotate_spatial",
      "erode",
      "dilate",
      "sobel",
      "mix",
      "noise",
      "ablate"
     ]
    }
   },
   {
    "box": {
     "id": "op3_msg",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      360,
      310,
      150,
      22
     ],
     "text": "prepend /netbend/bend/3/operator"
    }
   },
   {
    "box": {
     "id": "layer3",
     "maxclass": "umenu",
     "numinlets": 1,
     "numoutlets": 3,
     "patching_rect": [
      360,
      350,
      120,
      22
     ],
     "items": [
      "latent",
      "conv_in",
      "down.0",
      "down.1",
      "down.2",
      "down.3",
      "mid",
      "up.0",
      "up.1",
      "up.2",
      "up.3",
      "conv_out"
     ]
    }
   },
   {
    "box": {
     "id": "layer3_msg",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      360,
      380,
      150,
      22
     ],
     "text": "prepend /netbend/bend/3/layer"
    }
   },
   {
    "box": {
     "id": "enable3",
     "maxclass": "toggle",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      360,
      420,
      20,
      22
     ]
    }
   },
   {
    "box": {
     "id": "enable3_msg",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      360,
      450,
      150,
      22
     ],
     "text": "/netbend/bend/3/enable $1"
    }
   },
   {
    "box": {
     "id": "fb3",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      880,
      130,
      60,
      22
     ],
     "text": "set $1"
    }
   },
   {
    "box": {
     "id": "amount4",
     "maxclass": "slider",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      520,
      60,
      20,
      22
     ],
     "size": 1.0,
     "floatoutput": 1,
     "parameter_enable": 0
    }
   },
   {
    "box": {
     "id": "amount4_msg",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      520,
      240,
      150,
      22
     ],
     "text": "/netbend/bend/4/amount $1"
    }
   },
   {
    "box": {
     "id": "op4",
     "maxclass": "umenu",
     "numinlets": 1,
     "numoutlets": 3,
     "patching_rect": [
      520,
      280,
      120,
      22
     ],
     "items": [
      "rotate",
      "R1",
      "add",
      "multiply",
      "threshold_abs",
      "invert",
      "scale",
      "translate",
      "rotate_spatial",
      "erode",
      "dilate",
      "sobel",
      "mix",
      "noise",
      "ablate"
     ]
    }
   },
   {
    "box": {
     "id": "op4_msg",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      520,
      310,
      150,
      22
     ],
     "text": "prepend /netbend/bend/4/operator"
    }
   },
   {
    "box": {
     "id": "layer4",
     "maxclass": "umenu",
     "numinlets": 1,
     "numoutlets": 3,
     "patching_rect": [
      520,
      350,
      120,
      22
     ],
     "items": [
      "latent",
      "conv_in",
      "down.0",
      "down.1",
      "down.2",
      "down.3",
      "mid",
      "up.0",
      "up.1",
      "up.2",
      "up.3",
      "conv_out"
     ]
    }
   },
   {
    "box": {
     "id": "layer4_msg",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      520,
      380,
      150,
      22
     ],
     "text": "prepend /netbend/bend/4/layer"
    }
   },
   {
    "box": {
     "id": "enable4",
     "maxclass": "toggle",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      520,
      420,
      20,
      22
     ]
    }
   },
   {
    "box": {
     "id": "enable4_msg",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      520,
      450,
      150,
      22
     ],
     "text": "/netbend/bend/4/enable $1"
    }
   },
   {
    "box": {
     "id": "fb4",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      970,
      130,
      60,
      22
     ],
     "text": "set $1"
    }
   },
   {
    "box": {
     "id": "prompt",
     "maxclass": "textedit",
     "numinlets": 1,
     "numoutlets": 4,
     "patching_rect": [
      40,
      500,
      300,
      22
     ]
    }
   },
   {
    "box": {
     "id": "prompt_msg",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      40,
      530,
      150,
      22
     ],
     "text": "prepend /netbend/prompt"
    }
   },
   {
    "box": {
     "id": "button0",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      400,
      500,
      220,
      22
     ],
     "text": "/netbend/preset/load default"
    }
   },
   {
    "box": {
     "id": "button1",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      630,
      500,
      220,
      22
     ],
     "text": "/netbend/preset/load live-stained-glass bar"
    }
   },
   {
    "box": {
     "id": "button2",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      400,
      530,
      220,
      22
     ],
     "text": "/netbend/preset/load 1"
    }
   },
   {
    "box": {
     "id": "button3",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      630,
      530,
      220,
      22
     ],
     "text": "/netbend/preset/save my-look"
    }
   },
   {
    "box": {
     "id": "button4",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      400,
      560,
      220,
      22
     ],
     "text": "/netbend/state"
    }
   },
   {
    "box": {
     "id": "button5",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      630,
      560,
      220,
      22
     ],
     "text": "/netbend/tempo/tap"
    }
   },
   {
    "box": {
     "id": "button6",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      400,
      590,
      220,
      22
     ],
     "text": "/netbend/freeze 1"
    }
   },
   {
    "box": {
     "id": "button7",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      630,
      590,
      220,
      22
     ],
     "text": "/netbend/freeze 0"
    }
   },
   {
    "box": {
     "id": "button8",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      400,
      620,
      220,
      22
     ],
     "text": "/netbend/bend/*/enable 0"
    }
   },
   {
    "box": {
     "id": "button9",
     "maxclass": "message",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      630,
      620,
      220,
      22
     ],
     "text": "/netbend/bend/1/opt plane R2"
    }
   },
   {
    "box": {
     "id": "errors",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      1150,
      130,
      130,
      22
     ],
     "text": "print netbend-error"
    }
   },
   {
    "box": {
     "id": "comment",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      40,
      10,
      600,
      22
     ],
     "text": "netbend: 4 bend amounts (0..1), operator and layer menus, prompt, presets. Start netbend with --osc-feedback 127.0.0.1:9001 so the sliders follow the show."
    }
   }
  ],
  "lines": [
   {
    "patchline": {
     "source": [
      "udprecv",
      0
     ],
     "destination": [
      "route_top",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "amount1",
      0
     ],
     "destination": [
      "amount1_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "amount1_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "op1",
      1
     ],
     "destination": [
      "op1_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "op1_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "layer1",
      1
     ],
     "destination": [
      "layer1_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "layer1_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "enable1",
      0
     ],
     "destination": [
      "enable1_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "enable1_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "route_top",
      0
     ],
     "destination": [
      "fb1",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "fb1",
      0
     ],
     "destination": [
      "amount1",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "amount2",
      0
     ],
     "destination": [
      "amount2_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "amount2_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "op2",
      1
     ],
     "destination": [
      "op2_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "op2_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "layer2",
      1
     ],
     "destination": [
      "layer2_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "layer2_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "enable2",
      0
     ],
     "destination": [
      "enable2_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "enable2_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "route_top",
      1
     ],
     "destination": [
      "fb2",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "fb2",
      0
     ],
     "destination": [
      "amount2",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "amount3",
      0
     ],
     "destination": [
      "amount3_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "amount3_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "op3",
      1
     ],
     "destination": [
      "op3_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "op3_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "layer3",
      1
     ],
     "destination": [
      "layer3_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "layer3_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "enable3",
      0
     ],
     "destination": [
      "enable3_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "enable3_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "route_top",
      2
     ],
     "destination": [
      "fb3",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "fb3",
      0
     ],
     "destination": [
      "amount3",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "amount4",
      0
     ],
     "destination": [
      "amount4_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "amount4_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "op4",
      1
     ],
     "destination": [
      "op4_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "op4_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "layer4",
      1
     ],
     "destination": [
      "layer4_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "layer4_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "enable4",
      0
     ],
     "destination": [
      "enable4_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "enable4_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "route_top",
      3
     ],
     "destination": [
      "fb4",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "fb4",
      0
     ],
     "destination": [
      "amount4",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "prompt",
      0
     ],
     "destination": [
      "prompt_msg",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "prompt_msg",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "button0",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "button1",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "button2",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "button3",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "button4",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "button5",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "button6",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "button7",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "button8",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "button9",
      0
     ],
     "destination": [
      "udpsend",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "route_top",
      5
     ],
     "destination": [
      "errors",
      0
     ]
    }
   }
  ]
 }
}
