-- sysbench oltp_read_write with connection churn: each thread reconnects after every
-- --reconnect=N events (sysbench 1.0 has no such option of its own). Used by bench/soak.sh.
package.path = "/usr/share/sysbench/?.lua;" .. package.path
dofile("/usr/share/sysbench/oltp_read_write.lua")

sysbench.cmdline.options.reconnect =
   {"Reconnect after every N events (0: never)", 20}

local base_event = event
local done = 0

function event()
   base_event()
   done = done + 1
   if sysbench.opt.reconnect > 0 and done % sysbench.opt.reconnect == 0 then
      -- (con:reconnect() crashes sysbench 1.0.20)
      close_statements()
      con:disconnect()
      con = drv:connect()
      prepare_statements()
   end
end
