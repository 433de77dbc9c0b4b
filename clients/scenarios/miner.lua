-- miner.lua: a spacesim-load scenario (spacesim-load -s miner.lua).
--
-- Every client flies to the nearest asteroid in its view, mines it when it
-- is close enough, and looks for another when the server says it is gone.
-- A ping every few seconds checks the connection while the ship travels.
--
--   spacesim-load -c 1000 -d 60 -s miner.lua --hdr miner.hgrm
--
-- on_response sees the answer to every request this script sent: `ok` is
-- false for an error reply (result is then the error [code, message]).

timer = 0.25

local SPEED = 30
local MINE_RANGE = 25

function setup(client)
  client.state.mined = 0
  client.state.target = nil
  client.state.ticks = 0
end

local function dist(client, e)
  local x, y, z = client:pos()
  if not x then return nil end
  local dx, dy, dz = e.x - x, e.y - y, e.z - z
  return math.sqrt(dx * dx + dy * dy + dz * dz), dx, dy, dz
end

function on_timer(client)
  local s = client.state
  s.ticks = s.ticks + 1
  if s.ticks % 12 == 0 then
    client:ping()
  end
  local rock = client:nearest("asteroid")
  if not rock then return end
  local d, dx, dy, dz = dist(client, rock)
  if not d then return end
  if d > MINE_RANGE then
    client:move(dx / d * SPEED, dy / d * SPEED, dz / d * SPEED)
  else
    if s.target ~= rock.id then
      client:move(0, 0, 0)      -- stop beside it
      s.target = rock.id
    end
    client:mine(rock.id)
  end
end

function on_response(client, method, ok, result)
  if method == "mine" then
    if ok then
      client.state.mined = client.state.mined + 1
    else
      client.state.target = nil   -- out of range or gone: pick another
    end
  end
end
